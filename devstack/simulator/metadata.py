"""Dataverse Web API for the `lead` table's definitions that `connect` reads and writes: its
columns (attributes) and alternate keys. State lives in `org.Org`.

Shapes (Microsoft Learn):
- "Create and update column definitions using the Web API": `POST EntityDefinitions(LogicalName='lead')/Attributes`
  with a `Microsoft.Dynamics.CRM.StringAttributeMetadata` (`SchemaName`, `MaxLength`, `FormatName`,
  `RequiredLevel`, `DisplayName`) or `IntegerAttributeMetadata` (`MinValue`, `MaxValue`, `Format`) body,
  and `MSCRM.SolutionUniqueName: <solution>` to put it in an unmanaged solution; 204 with
  `OData-EntityId`. The schema name's prefix must be the customization prefix of that solution's
  publisher ("Web API table schema operations sample").
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/create-update-column-definitions-using-web-api
- "Retrieve table definitions by name or MetadataId": `GET EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='x')`,
  404 when there is no such column.
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/retrieve-metadata-name-metadataid
- "Define alternate keys using the Web API" / `EntityKeyMetadata`: `GET|POST EntityDefinitions(LogicalName='lead')/Keys`
  (`SchemaName`, `DisplayName`, `KeyAttributes`), read back with `EntityKeyIndexStatus` (Pending,
  InProgress, Active, Failed) while Dataverse builds the index in a system job.
  https://learn.microsoft.com/power-apps/developer/data-platform/define-alternate-keys-entity
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/entitykeymetadata
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from devstack.simulator.org import User
from devstack.simulator.security import API_PREFIX, Handler
from devstack.simulator.wire import Request, Response, json_response, odata_error

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator

_LEAD = "EntityDefinitions(LogicalName='lead')"
_TYPES = {
    "Microsoft.Dynamics.CRM.StringAttributeMetadata": "String",
    "Microsoft.Dynamics.CRM.IntegerAttributeMetadata": "Integer",
}


def route(method: str, rest: str) -> tuple[str, str | None, str, Handler] | None:
    """(counter name, privilege needed, entity, handler) of a `lead` definition call, or None."""
    if rest == f"{_LEAD}/Attributes" and method == "POST":
        return "metadata_attribute_create", "prvCreateAttribute", "attribute", _create_attribute
    if re.fullmatch(rf"{re.escape(_LEAD)}/Attributes\(LogicalName='\w+'\)", rest) and method == "GET":
        return "metadata_attribute", "prvReadEntity", "attribute", _attribute
    if rest == f"{_LEAD}/Keys":
        if method == "POST":
            return "metadata_key_create", "prvCreateEntityKey", "entitykey", _create_key
        return "metadata_keys", "prvReadEntityKey", "entitykey", _keys
    return None


def _attribute(sim: Simulator, request: Request, caller: User) -> Response:
    name = re.search(r"Attributes\(LogicalName='(\w+)'\)", request.path)
    logical = name.group(1).lower() if name else ""
    if not sim.org.has_column(logical):
        return odata_error(404, "0x80040217", f"Could not find attribute with name {logical} on entity lead.")
    return json_response(
        200,
        {
            "@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#EntityDefinitions('lead')/Attributes/$entity",
            "LogicalName": logical,
            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, "attribute:" + logical)),
        },
    )


def _create_attribute(sim: Simulator, request: Request, caller: User) -> Response:
    try:
        data: Any = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("@odata.type") not in _TYPES:
        return odata_error(
            400, "0x80048d19", "@odata.type: a column definition type (e.g. StringAttributeMetadata) is required."
        )
    schema = str(data.get("SchemaName") or "")
    solution = request.header("MSCRM.SolutionUniqueName")
    prefix = sim.org.prefix_for(solution)
    if prefix is None:
        return odata_error(404, "0x8004a106", f"The solution '{solution}' does not exist.")
    if not schema.lower().startswith(prefix + "_"):
        return odata_error(
            400,
            "0x80048403",
            f"The schema name {schema} for type Attribute is not prefixed with the publisher prefix {prefix}_.",
        )
    logical = schema.lower()
    if sim.org.has_column(logical):
        return odata_error(400, "0x80044363", f"An attribute with the specified name {logical} already exists.")
    sim.org.columns.add(logical)
    metadata_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "attribute:" + logical))
    return Response(204, b"", {"OData-EntityId": f"{sim.base_url}{API_PREFIX}{_LEAD}/Attributes({metadata_id})"})


def _key_row(sim: Simulator, key: Any) -> dict[str, Any]:
    return {
        "LogicalName": key.logical_name,
        "SchemaName": key.schema_name,
        "KeyAttributes": list(key.attributes),
        "EntityKeyIndexStatus": sim.org.key_status(key),
        "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_URL, "key:" + key.logical_name)),
    }


def _keys(sim: Simulator, request: Request, caller: User) -> Response:
    rows = [_key_row(sim, key) for key in list(sim.org.keys.values())]
    return json_response(
        200, {"@odata.context": f"{sim.base_url}{API_PREFIX}$metadata#EntityDefinitions('lead')/Keys", "value": rows}
    )


def _create_key(sim: Simulator, request: Request, caller: User) -> Response:
    try:
        data: Any = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    attributes = data.get("KeyAttributes") if isinstance(data, dict) else None
    schema = str(data.get("SchemaName") or "") if isinstance(data, dict) else ""
    if not schema or not isinstance(attributes, list) or not attributes:
        return odata_error(400, "0x80048d19", "A key needs a SchemaName and KeyAttributes.")
    prefix = sim.org.prefix_for(request.header("MSCRM.SolutionUniqueName"))
    if prefix is None or not schema.lower().startswith(prefix + "_"):
        return odata_error(400, "0x80048403", f"The schema name {schema} is not prefixed with the publisher prefix.")
    missing = [a for a in attributes if not sim.org.has_column(str(a).lower())]
    if missing:
        return odata_error(400, "0x80048403", f"Key attribute {missing[0]} does not exist on entity lead.")
    if schema.lower() in sim.org.keys:
        return odata_error(400, "0x80048403", f"An entity key with the name {schema} already exists.")
    key = sim.org.add_key(schema, [str(a).lower() for a in attributes])
    metadata_id = _key_row(sim, key)["MetadataId"]
    return Response(204, b"", {"OData-EntityId": f"{sim.base_url}{API_PREFIX}{_LEAD}/Keys({metadata_id})"})
