"""Dataverse Web API for the org's security setup: business units, users (application users),
security roles and their privileges, publishers and solutions — each call checked against the
caller's privileges, as Dataverse checks them. State lives in `org.Org`.

Shapes (Microsoft Learn, Dataverse Web API reference unless noted):
- `GET businessunits?$filter=_parentbusinessunitid_value eq null` — the root business unit
  ("businessunit table/entity reference").
- `GET|POST systemusers` with `applicationid` and `businessunitid@odata.bind` — an application user
  ("systemuser table/entity reference"; "Create a table row using the Web API": associate on create
  with `@odata.bind`). https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/systemuser
- `GET systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserSetOfPrivilegesByNames(PrivilegeNames=@p)?@p=[…]`
  → `RetrieveUserSetOfPrivilegesByNamesResponse {RolePrivileges: [RolePrivilege]}` — which of the
  named privileges the user holds.
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/retrieveusersetofprivilegesbynames
- `GET|POST roles`; `GET roles(<id>)/Microsoft.Dynamics.CRM.RetrieveRolePrivilegesRole()` →
  `{RolePrivileges: [{Depth, PrivilegeId, BusinessUnitId, PrivilegeName}]}`;
  `POST roles(<id>)/Microsoft.Dynamics.CRM.AddPrivilegesRole {Privileges: [RolePrivilege]}` (adds, or
  sets the depth of one already held); `POST roles(<id>)/Microsoft.Dynamics.CRM.RemovePrivilegeRole
  {PrivilegeId}`. `Depth` is the `PrivilegeDepth` enum, written by name (Basic, Local, Deep, Global).
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/addprivilegesrole
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/retrieverolePrivilegesrole
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/removeprivilegerole
- `GET privileges?$filter=name eq 'prvCreateLead' or …` ("privilege table/entity reference").
- `GET systemusers(<id>)/systemuserroles_association`, `POST …/systemuserroles_association/$ref
  {"@odata.id": "<org>/api/data/v9.2/roles(<id>)"}` — assign a role ("Associate and disassociate
  table rows using the Web API").
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/associate-disassociate-entities-using-web-api
- `GET|POST publishers` (`customizationprefix`), `GET|POST solutions` (`publisherid@odata.bind`)
  ("Web API table schema operations sample", section 0).
- A caller without the privilege a call needs: 403 `0x80040220` "Principal user (Id=…) is missing
  prvX privilege …" (the message form Dataverse sends; code observed).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.simulator.org import ALL_PRIVILEGES, DEPTHS, User, privilege_id
from devstack.simulator.wire import Request, Response, json_response, odata_error

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator

API_PREFIX = "/api/data/v9.2/"
_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"
Handler = Callable[["Simulator", Request, User], Response]
# The privileges the app's lead calls need (route name of dataverse.py → privileges).
LEAD_ROUTE_PRIVILEGES = {
    "lead_create": ("prvCreateLead",),
    "lead_create_multiple": ("prvCreateLead",),
    "lead_query": ("prvReadLead",),
    "lead_get": ("prvReadLead",),
    "lead_key_get": ("prvReadLead",),
    # An upsert creates or updates: Dataverse checks both privileges.
    "lead_upsert": ("prvCreateLead", "prvWriteLead"),
    "lead_delete": ("prvDeleteLead",),
}


def denied(sim: Simulator, user: User, privilege: str, entity: str) -> Response:
    """Dataverse's refusal of a call whose caller lacks `privilege`."""
    return odata_error(
        403,
        "0x80040220",
        f"Principal user (Id={user.systemuserid}, type=8, roleCount={len(user.roles)}), is missing {privilege} "
        f"privilege (Id={privilege_id(privilege)}) on entity '{entity}'.",
    )


def check_lead_call(sim: Simulator, route_name: str, user: User) -> Response | None:
    """The 403 a lead call gets when its caller lacks a privilege it needs, else None."""
    for privilege in LEAD_ROUTE_PRIVILEGES.get(route_name, ()):
        if sim.org.missing(user, privilege):
            return denied(sim, user, privilege, "lead")
    return None


def route(method: str, rest: str) -> tuple[str, str | None, str, Handler] | None:
    """(counter name, privilege needed or None, entity, handler) of a security call, or None."""
    user_fn = re.fullmatch(
        rf"systemusers\(({_GUID})\)/Microsoft\.Dynamics\.CRM\.RetrieveUserSetOfPrivilegesByNames\(.*\)", rest
    )
    if user_fn and method == "GET":
        return "security_user_privileges", None, "systemuser", _user_privileges
    if re.fullmatch(rf"systemusers\({_GUID}\)/systemuserroles_association", rest) and method == "GET":
        return "security_user_roles", "prvReadUser", "systemuser", _user_roles
    if re.fullmatch(rf"systemusers\({_GUID}\)/systemuserroles_association/\$ref", rest) and method == "POST":
        return "security_assign_role", "prvAssignRole", "role", _assign_role
    if rest == "systemusers":
        if method == "POST":
            return "security_user_create", "prvCreateUser", "systemuser", _create_user
        return "security_users", "prvReadUser", "systemuser", _users
    if rest == "businessunits" and method == "GET":
        return "security_business_units", None, "businessunit", _business_units
    if rest == "privileges" and method == "GET":
        return "security_privileges", None, "privilege", _privileges
    if rest == "roles":
        if method == "POST":
            return "security_role_create", "prvCreateRole", "role", _create_role
        return "security_roles", "prvReadRole", "role", _roles
    match = re.fullmatch(rf"roles\(({_GUID})\)/Microsoft\.Dynamics\.CRM\.(\w+)(?:\(\))?", rest)
    if match and match.group(2) == "RetrieveRolePrivilegesRole" and method == "GET":
        return "security_role_privileges", "prvReadRole", "role", _role_privileges
    if match and match.group(2) == "AddPrivilegesRole" and method == "POST":
        return "security_role_add", "prvWriteRole", "role", _add_privileges
    if match and match.group(2) == "RemovePrivilegeRole" and method == "POST":
        return "security_role_remove", "prvWriteRole", "role", _remove_privilege
    for collection, entity in (("publishers", "publisher"), ("solutions", "solution")):
        if rest == collection:
            verb, suffix = ("Create", "_create") if method == "POST" else ("Read", "")
            return f"security_{collection}{suffix}", f"prv{verb}{entity.capitalize()}", entity, _collection(collection)
    return None


def serve(
    sim: Simulator, request: Request, claims: dict[str, Any], entry: tuple[str, str | None, str, Handler]
) -> Response:
    """Run one security call for the caller `claims` names, after its privilege check."""
    _, privilege, entity, handler = entry
    user = sim.org.principal(claims)
    if user is None:
        return odata_error(403, "0x80072560", "The user is not a member of the organization.")
    if privilege and sim.org.missing(user, privilege):
        return denied(sim, user, privilege, entity)
    return handler(sim, request, user)


# -- helpers ---------------------------------------------------------------------------------------


def _conditions(text: str) -> tuple[list[tuple[str, str | None]], bool]:
    """`a eq 'x' and b eq <guid> or c eq null` → ([(column, value or None)], joined by `or`). The
    simulator reads only the equality filters `connect` sends."""
    found = re.findall(r"([\w]+) eq ('(?:[^']|'')*'|null|[0-9a-fA-F-]{36})", text or "")
    pairs = [(name.lower(), None if value == "null" else value.strip("'").replace("''", "'")) for name, value in found]
    return pairs, " or " in (text or "")


def _matches(row: dict[str, Any], text: str | None) -> bool:
    pairs, any_of = _conditions(text or "")
    if not pairs:
        return True
    hits = [
        str(row.get(name) or "").lower() == (value or "").lower() if value is not None else row.get(name) is None
        for name, value in pairs
    ]
    return any(hits) if any_of else all(hits)


def _select(row: dict[str, Any], request: Request) -> dict[str, Any]:
    wanted = request.query.get("$select")
    if not wanted:
        return dict(row)
    return {c: row.get(c) for c in (part.strip() for part in wanted.split(","))}


def _collection_response(sim: Simulator, name: str, rows: list[dict[str, Any]], request: Request) -> Response:
    chosen = [_select(row, request) for row in rows if _matches(row, request.query.get("$filter"))]
    return json_response(200, {"@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#{name}", "value": chosen})


def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _bound_id(value: Any, collection: str) -> str | None:
    match = re.fullmatch(rf"/?{collection}\(({_GUID})\)", str(value or ""))
    return match.group(1).lower() if match else None


def _path_id(request: Request, collection: str) -> str:
    match = re.search(rf"{collection}\(({_GUID})\)", request.path)
    return match.group(1).lower() if match else ""


def _created(sim: Simulator, request: Request, collection: str, row: dict[str, Any], key: str) -> Response:
    entity_id = f"{sim.base_url}{API_PREFIX}{collection}({row[key]})"
    if "return=representation" in (request.header("Prefer") or ""):
        return json_response(201, _select(row, request), {"OData-EntityId": entity_id})
    return Response(204, b"", {"OData-EntityId": entity_id})


# -- users -----------------------------------------------------------------------------------------


def _user_row(user: User) -> dict[str, Any]:
    return {
        "systemuserid": user.systemuserid,
        "applicationid": user.applicationid,
        "azureactivedirectoryobjectid": user.aad_object_id,
        "fullname": user.fullname,
        "_businessunitid_value": user.businessunitid,
        "isdisabled": False,
    }


def _users(sim: Simulator, request: Request, caller: User) -> Response:
    return _collection_response(sim, "systemusers", [_user_row(u) for u in list(sim.org.users.values())], request)


def _create_user(sim: Simulator, request: Request, caller: User) -> Response:
    data = _body(request)
    appid = str(data.get("applicationid") or "").lower()
    bu = _bound_id(data.get("businessunitid@odata.bind"), "businessunits")
    if not re.fullmatch(_GUID, appid):
        return odata_error(
            400, "0x80040203", "applicationid: an application (client) id is required for an application user."
        )
    if bu is None or bu not in sim.org.business_units:
        return odata_error(400, "0x80040203", "businessunitid: bind an existing business unit.")
    if sim.org.application_user(appid) is not None:
        return odata_error(412, "0x80040237", "A record with matching key values already exists.")
    return _created(sim, request, "systemusers", _user_row(sim.org.add_application_user(appid, bu)), "systemuserid")


def _user_privileges(sim: Simulator, request: Request, caller: User) -> Response:
    user = sim.org.users.get(_path_id(request, "systemusers"))
    if user is None:
        return odata_error(404, "0x80040217", "systemuser Does Not Exist")
    try:
        names = json.loads(request.query.get("@p", "[]"))
    except ValueError:
        return odata_error(400, "0x80060888", "PrivilegeNames: a JSON array of privilege names is required.")
    held = sim.org.held(user)
    rows = [
        {
            "Depth": held[name],
            "PrivilegeId": privilege_id(name),
            "BusinessUnitId": user.businessunitid,
            "PrivilegeName": name,
        }
        for name in names
        if name in held
    ]
    return json_response(200, {"RolePrivileges": rows})


def _user_roles(sim: Simulator, request: Request, caller: User) -> Response:
    user = sim.org.users.get(_path_id(request, "systemusers"))
    if user is None:
        return odata_error(404, "0x80040217", "systemuser Does Not Exist")
    rows = [{"roleid": r.roleid, "name": r.name} for r in sim.org.roles.values() if r.roleid in user.roles]
    return json_response(200, {"value": rows})


def _assign_role(sim: Simulator, request: Request, caller: User) -> Response:
    user = sim.org.users.get(_path_id(request, "systemusers"))
    role_id = re.search(rf"roles\(({_GUID})\)", str(_body(request).get("@odata.id") or ""))
    if user is None or role_id is None or role_id.group(1).lower() not in sim.org.roles:
        return odata_error(404, "0x80040217", "systemuser or role Does Not Exist")
    role = sim.org.roles[role_id.group(1).lower()]
    if role.businessunitid != user.businessunitid:
        return odata_error(400, "0x8004d2c8", "The role and the user must belong to the same business unit.")
    user.roles.add(role.roleid)
    return Response(204)


# -- business units, privileges, roles -----------------------------------------------------------------


def _business_units(sim: Simulator, request: Request, caller: User) -> Response:
    return _collection_response(sim, "businessunits", list(sim.org.business_units.values()), request)


def _privileges(sim: Simulator, request: Request, caller: User) -> Response:
    rows = [{"privilegeid": privilege_id(name), "name": name} for name in ALL_PRIVILEGES]
    return _collection_response(sim, "privileges", rows, request)


def _roles(sim: Simulator, request: Request, caller: User) -> Response:
    rows = [
        {"roleid": r.roleid, "name": r.name, "_businessunitid_value": r.businessunitid} for r in sim.org.roles.values()
    ]
    return _collection_response(sim, "roles", rows, request)


def _create_role(sim: Simulator, request: Request, caller: User) -> Response:
    data = _body(request)
    bu = _bound_id(data.get("businessunitid@odata.bind"), "businessunits")
    if not data.get("name") or bu is None or bu not in sim.org.business_units:
        return odata_error(400, "0x80040203", "A role needs a name and an existing business unit.")
    role = sim.org.add_role(str(data["name"]), {}, bu)
    return _created(sim, request, "roles", {"roleid": role.roleid, "name": role.name}, "roleid")


def _role_privileges(sim: Simulator, request: Request, caller: User) -> Response:
    role = sim.org.roles.get(_path_id(request, "roles"))
    if role is None:
        return odata_error(404, "0x80040217", "role Does Not Exist")
    rows = [
        {
            "Depth": depth,
            "PrivilegeId": privilege_id(name),
            "BusinessUnitId": role.businessunitid,
            "PrivilegeName": name,
        }
        for name, depth in sorted(role.privileges.items())
    ]
    return json_response(200, {"RolePrivileges": rows})


def _privilege_name(privilege: str) -> str | None:
    return next((name for name in ALL_PRIVILEGES if privilege_id(name) == privilege.lower()), None)


def _depth(value: Any) -> str | None:
    if isinstance(value, int) and 0 <= value < len(DEPTHS):
        return DEPTHS[value]
    return value if value in DEPTHS else None


def _add_privileges(sim: Simulator, request: Request, caller: User) -> Response:
    role = sim.org.roles.get(_path_id(request, "roles"))
    if role is None:
        return odata_error(404, "0x80040217", "role Does Not Exist")
    changes: dict[str, str] = {}
    for item in _body(request).get("Privileges") or []:
        name = _privilege_name(str(item.get("PrivilegeId") or ""))
        depth = _depth(item.get("Depth"))
        if name is None or depth is None:
            return odata_error(400, "0x80040203", "Privileges: each needs an existing PrivilegeId and a Depth.")
        changes[name] = depth
    role.privileges.update(changes)
    return Response(204)


def _remove_privilege(sim: Simulator, request: Request, caller: User) -> Response:
    role = sim.org.roles.get(_path_id(request, "roles"))
    name = _privilege_name(str(_body(request).get("PrivilegeId") or ""))
    if role is None or name is None:
        return odata_error(404, "0x80040217", "role or privilege Does Not Exist")
    role.privileges.pop(name, None)
    return Response(204)


# -- publishers and solutions --------------------------------------------------------------------------


def _collection(collection: str) -> Handler:
    key = "publisherid" if collection == "publishers" else "solutionid"

    def handle(sim: Simulator, request: Request, caller: User) -> Response:
        table = sim.org.publishers if collection == "publishers" else sim.org.solutions
        if request.method != "POST":
            return _collection_response(sim, collection, list(table.values()), request)
        data = _body(request)
        if not data.get("uniquename") or any(r["uniquename"] == data["uniquename"] for r in table.values()):
            return odata_error(400, "0x80048403", f"A {collection[:-1]} needs a unique uniquename.")
        row = {k: v for k, v in data.items() if "@" not in k}
        if collection == "publishers" and not re.fullmatch(
            r"[a-z][a-z0-9]{1,7}", str(data.get("customizationprefix") or "")
        ):
            return odata_error(400, "0x80048403", "customizationprefix: 2-8 letters or digits, starting with a letter.")
        if collection == "solutions":
            publisher = _bound_id(data.get("publisherid@odata.bind"), "publishers")
            if publisher is None or publisher not in sim.org.publishers:
                return odata_error(400, "0x80048403", "publisherid: bind an existing publisher.")
            row["_publisherid_value"] = publisher
        row[key] = str(uuid.uuid4())
        table[row[key]] = row
        return _created(sim, request, collection, row, key)

    return handle
