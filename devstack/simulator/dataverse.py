"""Dataverse Web API v9.2 for `leads`, `WhoAmI` and `EntityDefinitions`, behind a bearer token,
the service-protection limits and the injected faults.

Wire shapes from `shared/reference/dataverse-wire.md` (Microsoft Learn: "Use the Dataverse Web
API", "Service protection API limits", "Use an alternate key to reference a record", "Web API
error codes"). Every state change goes through the `Simulator`'s methods."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.odata import FilterSyntaxError, UnknownColumn, parse_filter
from devstack.simulator import metadata as lead_metadata
from devstack.simulator import security
from devstack.simulator.leads import ALL_COLUMNS, KEY_COLUMN, KEY_FORBIDDEN, PICKLISTS, select, validate_lead
from devstack.simulator.wire import Request, Response, json_response, odata_error, seconds

if TYPE_CHECKING:
    from devstack.simulator.state import Fault
    from devstack.simulator.state import SimulatorState as Simulator

API_PREFIX = "/api/data/v9.2/"
_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
_BAD_PAYLOAD = "Error identified in Payload provided by the user for Entity :'leads'."
# The collection-bound bulk action (bulk-operations.md, "CreateMultiple", Web API tab).
CREATE_MULTIPLE = "leads/Microsoft.Dynamics.CRM.CreateMultiple"
LEAD_TYPE = "Microsoft.Dynamics.CRM.lead"
_DUPLICATE_KEY = (
    "A record that has the attribute values Domain already exists. "
    "The entity key hnt_domainkey requires that this set of attributes contains unique values."
)

Handler = Callable[["Simulator", Request, dict[str, Any]], Response]


def route(method: str, path: str) -> tuple[str, Handler]:
    """The counter name and handler of a request under `API_PREFIX`."""
    rest = path[len(API_PREFIX) :]
    if rest in ("WhoAmI", "WhoAmI()"):
        return "whoami", whoami
    if rest.startswith("EntityDefinitions"):
        return "metadata", metadata
    if rest == "leads":
        return ("lead_create", create) if method == "POST" else ("lead_query", query_leads)
    if rest == CREATE_MULTIPLE and method == "POST":
        return "lead_create_multiple", create_multiple
    if re.fullmatch(rf"leads\({_GUID}\)", rest):
        return ("lead_delete", delete) if method == "DELETE" else ("lead_get", get)
    if rest.startswith("leads(") and rest.endswith(")"):
        return ("lead_upsert", upsert) if method == "PATCH" else ("lead_key_get", key_get)
    return "lead_unknown", lambda *_: odata_error(404, "0x80060888", f"Resource not found for the segment '{rest}'.")


def serve(sim: Simulator, request: Request) -> Response:
    """Run one Dataverse request (token, limits, faults and latency, then its handler; counted),
    answered with an `x-ms-service-request-id`."""
    server, set_cookie = sim.web_server(request.header("Cookie"))
    response = _serve(sim, request, server)
    if set_cookie:
        response.headers["Set-Cookie"] = set_cookie  # the load balancer's affinity cookie (protection.py)
    # Dataverse puts its own request id on every Web API response, errors included; it is the id
    # Microsoft support traces a request by (Microsoft Learn, "Compose HTTP requests and handle
    # errors"; Microsoft's PowerPlatform-DataverseClient-Python keeps it on every `HttpError`).
    response.headers.setdefault("x-ms-service-request-id", str(uuid.uuid4()))
    return response


def _serve(sim: Simulator, request: Request, server: int) -> Response:
    sim.org.tick()
    name, handler = route(request.method, request.path)
    # The org's setup (security.py, metadata.py): users, roles, columns, keys.
    rest = request.path[len(API_PREFIX) :]
    setup = security.route(request.method, rest) or lead_metadata.route(request.method, rest)
    if setup is not None:
        name, handler = setup[0], lambda s, r, c: security.serve(s, r, c, setup)
    request_id = request.header("x-ms-client-request-id")
    claims = sim.verify_token(request.header("Authorization"), sim.base_url)
    user = sim.org.principal(claims) if claims is not None else None
    if claims is None or user is None:
        sim.count(name, 401)
        return Response(401, b"", {"WWW-Authenticate": challenge(sim)})
    refused = security.check_lead_call(sim, name, user)
    if refused is not None:
        sim.count(name, refused.status, request_id)
        return refused
    throttled = sim.admit(server)
    if throttled is not None:
        sim.count(name, 429)
        return odata_error(429, throttled.code, throttled.message, {"Retry-After": seconds(throttled.retry_after)})
    records = 0
    try:
        fault = sim.take_fault(name)
        delay = sim.latency_ms + (fault.latency_ms if fault else 0.0)
        if delay:
            time.sleep(delay / 1000)
        if fault and fault.status:
            response = fault_response(sim, fault)
        else:
            response = handler(sim, request, claims)
            records = response.records
            busy = sim.execution_cost(records)
            if busy:
                time.sleep(busy)  # the server works for as long as it charges
            if fault and fault.drop_after_commit:
                sim.count(name, 0, request_id)
                return Response(0, drop=True)
    finally:
        sim.release(records, server)
    sim.count(name, response.status, request_id)
    return response


def challenge(sim: Simulator) -> str:
    """Dataverse's answer to a missing, expired or revoked token: 401, empty body, and this
    header (Microsoft Learn, "Use OAuth authentication with Microsoft Dataverse": discover the
    authority from the WWW-Authenticate header's authorization_uri and resource_id)."""
    return f"Bearer authorization_uri={sim.base_url}/{sim.tenant_id}/oauth2/authorize, resource_id={sim.base_url}/"


def fault_response(sim: Simulator, fault: Fault) -> Response:
    """The answer an injected fault stands for."""
    headers = {}
    if fault.retry_after is not None or fault.status == 429:
        headers["Retry-After"] = seconds(fault.retry_after if fault.retry_after is not None else 1)
    if fault.status == 429:
        # As Dataverse would say it: the message names the limits in force.
        code = fault.code or "0x80072322"
        return odata_error(429, code, sim.limit_message(code), headers)
    if fault.status == 401:
        return Response(401, b"", {"WWW-Authenticate": challenge(sim)})
    messages = {500: "An unexpected error occurred.", 503: "The service is temporarily unavailable."}
    return odata_error(fault.status, fault.code or "0x80040216", messages.get(fault.status, "Injected fault."), headers)


# -- WhoAmI and metadata -------------------------------------------------------------------------


def whoami(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """GET WhoAmI: the caller's systemuser id and business unit."""
    user = sim.org.principal(claims)
    return json_response(
        200,
        {
            "@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": user.businessunitid if user else sim.org.root_bu,
            "UserId": user.systemuserid if user else claims["oid"],
            "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_DNS, "org." + sim.tenant_id)),
        },
    )


def _picklists() -> dict[str, Any]:
    return {
        "value": [
            {
                "LogicalName": name,
                "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                "OptionSet": {
                    "Options": [
                        {
                            "Value": value,
                            "Label": {
                                "LocalizedLabels": [{"Label": label, "LanguageCode": 1033}],
                                "UserLocalizedLabel": {"Label": label, "LanguageCode": 1033},
                            },
                        }
                        for value, label in options
                    ]
                },
            }
            for name, options in PICKLISTS.items()
        ]
    }


def metadata(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """GET EntityDefinitions…: the `lead` entity and its picklist attributes."""
    rest = request.path[len(API_PREFIX) :]
    if "PicklistAttributeMetadata" in rest:
        return json_response(200, _picklists())
    wanted = re.search(r"LogicalName eq '([^']*)'", request.query.get("$filter", "")) or re.search(
        r"LogicalName='([^']*)'", rest
    )
    lead = {
        "LogicalName": "lead",
        "EntitySetName": "leads",
        "PrimaryIdAttribute": "leadid",
        "PrimaryNameAttribute": "fullname",
        "ObjectTypeCode": 4,
        "MetadataId": "e3fe4ff2-a630-49bb-a1e9-debc3a076815",
    }
    rows = [lead] if wanted and wanted.group(1).lower() == "lead" else []
    return json_response(
        200, {"@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#EntityDefinitions", "value": rows}
    )


# -- leads ---------------------------------------------------------------------------------------


def _validate(sim: Simulator, body: Any) -> tuple[dict[str, Any] | None, Response | None]:
    """`validate_lead`, and a column the org does not have yet (an `hnt_*` column before `connect`
    created it) is an unknown property, as Dataverse says it."""
    fields, error = validate_lead(body)
    absent = [name for name in fields or {} if not sim.org.has_column(name)]
    if absent:
        return None, odata_error(
            400, "0x0", f"Invalid property '{absent[0]}' was found in entity 'Microsoft.Dynamics.CRM.lead'."
        )
    return fields, error


def _body(sim: Simulator, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        return None, odata_error(400, "0x80048d19", _BAD_PAYLOAD)
    fields, error = _validate(sim, data)
    if error is not None or fields is None:
        return None, error or odata_error(400, "0x0", "invalid body")
    return fields, None


def create(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """POST leads"""
    fields, error = _body(sim, request)
    if fields is None:
        return error or odata_error(400, "0x0", "invalid body")
    record = sim.create_lead(fields)
    if record is None:
        return _written(odata_error(412, "0x80060892", _DUPLICATE_KEY), 1)
    return _written(_created(sim, request, record), 1)


def _written(response: Response, records: int) -> Response:
    response.records = records
    return response


def create_multiple(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """POST leads/Microsoft.Dynamics.CRM.CreateMultiple `{"Targets": [{…, "@odata.type":
    "Microsoft.Dynamics.CRM.lead"}]}` → 200 `{"@odata.context", "Ids": [...]}` (bulk-operations.md).

    `lead` is a standard table, so the call is all or nothing ("Any error that occurs in a bulk
    operation with a standard table causes the entire operation to roll back"): the first invalid
    target, or an alternate-key value already held or repeated within `Targets`, fails it and
    nothing is created. Each target must carry `@odata.type` ("You must set the `@odata.type`
    property for each item in the `Targets` parameter")."""
    try:
        data = json.loads(request.body or b"null")
    except ValueError:
        return odata_error(400, "0x80048d19", _BAD_PAYLOAD)
    targets = data.get("Targets") if isinstance(data, dict) else None
    if not isinstance(targets, list) or not targets:
        return odata_error(400, "0x80048d19", "Targets: a non-empty collection of leads is required.")
    fields_list: list[dict[str, Any]] = []
    for index, target in enumerate(targets):
        if not isinstance(target, dict) or target.get("@odata.type") != LEAD_TYPE:
            return _written(
                odata_error(400, "0x80048d19", f"Targets[{index}]: '@odata.type' must be '{LEAD_TYPE}' for a lead."),
                index + 1,
            )
        fields, error = _validate(sim, target)
        if error is not None or fields is None:
            return _written(error or odata_error(400, "0x0", "invalid body"), index + 1)
        fields_list.append(fields)
    ids, failed = sim.create_leads(fields_list)
    if ids is None:
        return _written(odata_error(412, "0x80060892", _DUPLICATE_KEY), failed + 1)
    body = {"@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse"}
    return _written(json_response(200, {**body, "Ids": ids}), len(ids))


def _created(sim: Simulator, request: Request, record: dict[str, Any], entity_url: str | None = None) -> Response:
    entity_id = entity_url or f"{sim.base_url}{API_PREFIX}leads({record['leadid']})"
    if "return=representation" in (request.header("Prefer") or ""):
        data = select(record, request.query.get("$select"))
        data["@odata.context"] = f"{sim.base_url}{API_PREFIX}$metadata#leads/$entity"
        return json_response(201, data, {"OData-EntityId": entity_id, "Preference-Applied": "return=representation"})
    return Response(204, b"", {"OData-EntityId": entity_id, "OData-Version": "4.0"})


def _lead_id(request: Request) -> str:
    return request.path[len(API_PREFIX) + len("leads(") : -1].lower()


def get(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """GET leads({id})"""
    lead_id = _lead_id(request)
    record = sim.get_lead(lead_id)
    if record is None:
        return odata_error(404, "0x80040217", f"lead With Id = {lead_id} Does Not Exist")
    data = select(record, request.query.get("$select"))
    data["@odata.context"] = f"{sim.base_url}{API_PREFIX}$metadata#leads(leadid)/$entity"
    return json_response(200, data)


def delete(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """DELETE leads({id})"""
    lead_id = _lead_id(request)
    if not sim.delete_lead(lead_id):
        return odata_error(404, "0x80040217", f"lead With Id = {lead_id} Does Not Exist")
    return Response(204)


def query_leads(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """GET leads?$filter=…&$select=…&$top=…"""
    text = request.query.get("$filter")
    try:
        predicate = parse_filter(text, {c for c in ALL_COLUMNS if sim.org.has_column(c)}) if text else None
    except FilterSyntaxError as exc:
        return odata_error(400, "0x80060888", str(exc))
    except UnknownColumn as exc:
        return odata_error(
            400, "0x80060888", f"Could not find a property named '{exc}' on type 'Microsoft.Dynamics.CRM.lead'."
        )
    try:
        top = int(request.query.get("$top") or 5000)
    except ValueError:
        return odata_error(400, "0x80060888", "Invalid value for $top.")
    rows = [select(r, request.query.get("$select")) for r in sim.leads(predicate)]
    return json_response(
        200, {"@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#leads(leadid)", "value": rows[:top]}
    )


def _key(sim: Simulator, request: Request) -> tuple[str | None, Response | None]:
    inner = request.path[len(API_PREFIX) + len("leads(") : -1]
    match = re.fullmatch(r"(\w+)='((?:[^']|'')*)'", inner)
    if not match:
        return None, odata_error(400, "0x80060888", f"Bad Request - Error in query syntax: leads({inner}).")
    if match.group(1).lower() != KEY_COLUMN or not sim.alternate_key:
        return None, odata_error(
            400, "0x80060888", f"The key '{match.group(1)}' is not defined as an alternate key for entity 'lead'."
        )
    value = match.group(2).replace("''", "'")
    if any(ch in KEY_FORBIDDEN for ch in value):
        return None, odata_error(400, "0x80060888", "Key values cannot contain / < > * % & : \\ ?")
    return value, None


def key_get(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """GET leads(hnt_domain='…')"""
    value, error = _key(sim, request)
    if error is not None or value is None:
        return error or odata_error(400, "0x0", "bad key")
    record = sim.find_by_key(value)
    if record is None:
        return odata_error(404, "0x80040217", f"lead With Id = {KEY_COLUMN}={value} Does Not Exist")
    return json_response(200, select(record, request.query.get("$select")))


def upsert(sim: Simulator, request: Request, claims: dict[str, Any]) -> Response:
    """PATCH leads(hnt_domain='…'), with If-Match: * (update only) or If-None-Match: * (create only)."""
    value, error = _key(sim, request)
    if error is not None or value is None:
        return error or odata_error(400, "0x0", "bad key")
    fields, invalid = _body(sim, request)
    if fields is None:
        return invalid or odata_error(400, "0x0", "invalid body")
    entity_url = f"{sim.base_url}{API_PREFIX}leads({KEY_COLUMN}='{value}')"
    outcome, record = sim.upsert_lead(
        value, fields, if_match=request.header("If-Match") == "*", if_none_match=request.header("If-None-Match") == "*"
    )
    if outcome == "exists":
        return odata_error(412, "0x80040237", "A record with matching key values already exists.")
    if outcome == "missing" or record is None:
        return odata_error(404, "0x80040217", f"lead With Id = {KEY_COLUMN}={value} Does Not Exist")
    if outcome == "created":
        return _written(_created(sim, request, record, entity_url), 1)
    if "return=representation" in (request.header("Prefer") or ""):
        return _written(json_response(200, select(record, request.query.get("$select"))), 1)
    return _written(Response(204, b"", {"OData-EntityId": entity_url}), 1)
