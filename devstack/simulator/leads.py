"""The `lead` table as the simulated Dataverse knows it: its columns, option sets and alternate
key, and the checks Dataverse applies to a create or upsert body."""

from __future__ import annotations

from typing import Any

from devstack.simulator.wire import Response, odata_error

# The lead columns the simulator knows: name → (type, max length for strings).
LEAD_COLUMNS: dict[str, tuple[type, int]] = {
    "subject": (str, 300),
    "lastname": (str, 50),
    "firstname": (str, 50),
    "fullname": (str, 160),
    "companyname": (str, 100),
    "websiteurl": (str, 200),
    "emailaddress1": (str, 100),
    "telephone1": (str, 50),
    "address1_city": (str, 80),
    "address1_country": (str, 80),
    "description": (str, 2000),
    "leadsourcecode": (int, 0),
    "leadqualitycode": (int, 0),
    "hnt_finalscore": (int, 0),
    "hnt_segment": (str, 100),
    "hnt_priority": (int, 0),
    "hnt_domain": (str, 255),
}
READ_ONLY = {"leadid", "createdon", "modifiedon", "versionnumber"}
ALL_COLUMNS = set(LEAD_COLUMNS) | READ_ONLY
KEY_COLUMN = "hnt_domain"
KEY_FORBIDDEN = set("/<>*%&:\\?")
PICKLISTS = {
    "leadsourcecode": [(1, "Advertisement"), (2, "Employee Referral"), (8, "Web"), (10, "Other")],
    "leadqualitycode": [(1, "Hot"), (2, "Warm"), (3, "Cold")],
}


def validate_lead(body: Any) -> tuple[dict[str, Any] | None, Response | None]:
    """Check a create/upsert body the way Dataverse does: known columns, types, lengths."""
    if not isinstance(body, dict):
        return None, odata_error(
            400, "0x80048d19", "Error identified in Payload provided by the user for Entity :'leads'."
        )
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        column = LEAD_COLUMNS.get(name)
        if column is None:
            return None, odata_error(
                400, "0x0", f"Invalid property '{name}' was found in entity 'Microsoft.Dynamics.CRM.lead'."
            )
        kind, limit = column
        if value is not None and kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return None, odata_error(
                400,
                "0x80048d19",
                f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.",
            )
        if value is not None and kind is str and not isinstance(value, str):
            return None, odata_error(
                400, "0x80048d19", f"Cannot convert a primitive value to the expected type 'Edm.String' for '{name}'."
            )
        # Dataverse counts a string's length in UTF-16 code units (.NET String.Length, SQL nvarchar
        # byte-pairs): a character beyond U+FFFF counts 2. surrogatepass: a lone one counts 1.
        if kind is str and isinstance(value, str) and len(value.encode("utf-16-le", "surrogatepass")) // 2 > limit:
            return None, odata_error(
                400,
                "0x80044331",
                f"A validation error occurred. The length of the '{name}' attribute of the 'lead' "
                f"entity exceeded the maximum allowed length of '{limit}'.",
            )
        if name in PICKLISTS and value is not None and value not in {v for v, _ in PICKLISTS[name]}:
            return None, odata_error(400, "0x8004431a", f"{name} value {value} is not a valid option.")
        fields[name] = value
    return fields, None


def select(record: dict[str, Any], selected: str | None) -> dict[str, Any]:
    """A record as the Web API returns it, with `$select` applied."""
    columns = [c.strip().lower() for c in selected.split(",")] if selected else sorted(ALL_COLUMNS)
    out: dict[str, Any] = {"@odata.etag": f'W/"{record["versionnumber"]}"'}
    for column in columns:
        out[column] = record.get(column)
    out["leadid"] = record["leadid"]
    return out
