"""Lead operations: the Web API calls the push makes on `leads`, each one request through a
`Transport` (`transport.py`) — create, get, find by domain (one value or many with `In`),
create-only upsert through the alternate key, `CreateMultiple`, the verification queries by id,
and `WhoAmI` (the smoke test's check of the connection).

This module knows what the requests say and what their answers mean for a lead (a 404 is "no such
lead", a 412 on the upsert is "the key exists", the id comes from `OData-EntityId`); how a request
travels — token, pacing, the in-flight bound, which answer is which error — is the transport's.
Every method returns a value or raises a `D365Error` subclass (`errors.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from shared.dataverse.errors import D365APIError
from shared.dataverse.transport import Transport
from shared.ids import GUID, is_guid

# Ids per verification query: 50 GUID comparisons keep the URL near 3 KB, well inside the URL
# length Dataverse accepts for a GET (longer queries need `$batch`), in one request each.
IDS_PER_QUERY = 50
# Values per `Microsoft.Dynamics.CRM.In(...)` lookup: 100 domains (at most 192 characters each once
# normalised, typically ~20) keep the URL a few KB, so one bulk message of 100 leads costs one query.
VALUES_PER_QUERY = 100
# The collection-bound bulk create (Microsoft Learn, bulk-operations.md, Web API tab): every target
# must carry `@odata.type`.
CREATE_MULTIPLE_PATH = "leads/Microsoft.Dynamics.CRM.CreateMultiple"
LEAD_ODATA_TYPE = "Microsoft.Dynamics.CRM.lead"
# A bulk create may wait this long for the pacer: a worker thread sleeping beats a trip through the
# queue, which releases and re-takes 100 claims. A single request waits the pacer's default.
BULK_MAX_WAIT_SECONDS = 15.0


def odata_literal(value: str) -> str:
    """`value` as an OData string literal: single quotes doubled, wrapped in quotes."""
    return "'" + value.replace("'", "''") + "'"


def key_path(column: str, value: str) -> str:
    """The path of the lead with alternate key `column=value`: `leads(col='value')`, URL-encoded."""
    return f"leads({column}={quote(odata_literal(value), safe=chr(39))})"


def entity_id(response: requests.Response) -> str:
    """The id of the lead a create answered with: from `OData-EntityId`, else the body's `leadid`.

    Raises:
        D365APIError: neither says it (code `no_entity_id`).
    """
    entity = response.headers.get("OData-EntityId", "")
    found = GUID.search(entity)
    if found:
        return found.group(0).lower()
    if response.content:
        lead_id = response.json().get("leadid")
        if lead_id:
            return str(lead_id)
    raise D365APIError("Dataverse created a lead but did not say its id", response.status_code, "no_entity_id")


@dataclass(frozen=True)
class UpsertResult:
    """The answer to a create-only upsert: the new id, or None when the key already existed."""

    lead_id: str | None
    created: bool


class LeadOperations:
    """The calls on `leads`, over one transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def get_lead(self, lead_id: str, correlation_id: str | None = None) -> str | None:
        """The lead's id if a lead with `lead_id` exists, else None (Dataverse's 404).

        Raises:
            D365Error: any other failure.
        """
        record = self.read_lead(lead_id, ("leadid",), correlation_id)
        return None if record is None else str(record["leadid"])

    def read_lead(
        self, lead_id: str, columns: tuple[str, ...], correlation_id: str | None = None
    ) -> dict[str, Any] | None:
        """`columns` of the lead with `lead_id` (always with `leadid`), or None on Dataverse's 404.

        Raises:
            ValueError: `lead_id` is not a GUID.
            D365Error: any other failure.
        """
        if not is_guid(lead_id):
            raise ValueError("lead_id must be a GUID")
        select = ",".join(dict.fromkeys(("leadid", *columns)))
        response = self.transport.request(
            "GET", f"leads({lead_id})", correlation_id, params={"$select": select}, absent=(404,)
        )
        return None if response is None else dict(response.json())

    def read_leads(
        self, lead_ids: list[str], columns: tuple[str, ...], correlation_id: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The leads among `lead_ids` that exist, by lower-case id: one query per
        `IDS_PER_QUERY` ids (`leadid eq <guid> or …`; a GUID is an unquoted OData literal).

        Raises:
            ValueError: an id is not a GUID.
            D365Error: a query failed.
        """
        if not all(is_guid(lead_id) for lead_id in lead_ids):
            raise ValueError("every lead id must be a GUID")
        select = ",".join(dict.fromkeys(("leadid", *columns)))
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(lead_id.lower() for lead_id in lead_ids))
        for start in range(0, len(unique), IDS_PER_QUERY):
            chunk = unique[start : start + IDS_PER_QUERY]
            params = {"$select": select, "$filter": " or ".join(f"leadid eq {lead_id}" for lead_id in chunk)}
            response = self.transport.request("GET", "leads", correlation_id, params=params)
            assert response is not None
            for row in response.json().get("value", []):
                found[str(row["leadid"]).lower()] = dict(row)
        return found

    def find_lead(self, column: str, value: str, correlation_id: str | None = None) -> str | None:
        """The id of a lead whose `column` equals `value` (case-insensitive, as Dataverse compares).

        The value is always sent as an escaped OData literal, so a value such as
        `x' or hnt_domain ne 'y` is a string to match, never part of the filter.

        Raises:
            D365Error: the query failed.
        """
        params = {
            "$select": "leadid",
            "$filter": f"{column} eq {odata_literal(value)}",
            "$top": "1",
        }
        response = self.transport.request("GET", "leads", correlation_id, params=params)
        assert response is not None
        rows = response.json().get("value", [])
        return str(rows[0]["leadid"]) if rows else None

    def find_many(self, column: str, values: list[str], correlation_id: str | None = None) -> dict[str, str]:
        """The ids of the leads whose `column` equals one of `values`, by case-folded value: one
        `Microsoft.Dynamics.CRM.In(PropertyName=…,PropertyValues=[…])` query per
        `VALUES_PER_QUERY` values (Web API function reference, "In Function"). Values are escaped
        OData literals. When two leads share a value, the first returned wins.

        Raises:
            D365Error: a query failed.
        """
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(value.casefold() for value in values))
        for start in range(0, len(unique), VALUES_PER_QUERY):
            chunk = unique[start : start + VALUES_PER_QUERY]
            literals = ",".join(odata_literal(value) for value in chunk)
            params = {
                "$select": f"leadid,{column}",
                "$filter": f"Microsoft.Dynamics.CRM.In(PropertyName={odata_literal(column)},PropertyValues=[{literals}])",
            }
            response = self.transport.request(
                "GET", "leads", correlation_id, params=params, max_wait=BULK_MAX_WAIT_SECONDS
            )
            assert response is not None
            for row in response.json().get("value", []):
                value = row.get(column)
                if isinstance(value, str):
                    found.setdefault(value.casefold(), str(row["leadid"]).lower())
        return found

    def create_many(self, payloads: list[dict[str, Any]], correlation_id: str | None = None) -> list[str]:
        """Create many leads in one `CreateMultiple` call; their ids, in order.

        On `lead` (a standard table) the call is all or nothing: any bad record, or an
        alternate-key value already taken, fails it and nothing is created.

        Raises:
            D365Error: the call failed (nothing was created), or its response was lost
            (transient: the leads may exist — look them up before creating again).
        """
        targets = [{**payload, "@odata.type": LEAD_ODATA_TYPE} for payload in payloads]
        response = self.transport.request(
            "POST",
            CREATE_MULTIPLE_PATH,
            correlation_id,
            json_body={"Targets": targets},
            records=len(payloads),
            max_wait=BULK_MAX_WAIT_SECONDS,
        )
        assert response is not None
        ids = response.json().get("Ids")
        if not isinstance(ids, list) or len(ids) != len(payloads):
            raise D365APIError(
                "CreateMultiple answered without one id per record",
                response.status_code,
                "no_entity_id",
                transient=True,
            )
        return [str(lead_id).lower() for lead_id in ids]

    def get_lead_by_key(self, column: str, value: str, correlation_id: str | None = None) -> str | None:
        """The id of the lead with alternate key `column=value`, else None.

        Raises:
            D365Error: the request failed (400 if the org has no such key).
        """
        response = self.transport.request(
            "GET",
            key_path(column, value),
            correlation_id,
            params={"$select": "leadid"},
            absent=(404,),
        )
        return None if response is None else str(response.json()["leadid"])

    def create_lead(self, payload: dict[str, Any], correlation_id: str | None = None) -> str:
        """Create a lead; return its id (from `OData-EntityId`).

        Raises:
            D365Error: the create failed (or its response was lost: transient, and the lead may
            exist — the caller looks it up before creating again).
        """
        response = self.transport.request("POST", "leads", correlation_id, json_body=payload, ok=(204, 201))
        assert response is not None
        return entity_id(response)

    def create_lead_if_absent(
        self, column: str, value: str, payload: dict[str, Any], correlation_id: str | None = None
    ) -> UpsertResult:
        """Create-only upsert through an alternate key: one round trip, never a duplicate.

        `PATCH leads(col='value')` with `If-None-Match: *` creates the lead or answers 412 when a
        lead with that key exists (then `lead_id` is None: look it up with `get_lead_by_key`).

        Raises:
            D365Error: any other failure.
        """
        response = self.transport.request(
            "PATCH",
            key_path(column, value),
            correlation_id,
            params={"$select": "leadid"},
            json_body=payload,
            headers={"If-None-Match": "*", "Prefer": "return=representation"},
            ok=(201, 200, 204),
            absent=(412,),
        )
        if response is None:
            return UpsertResult(None, created=False)
        if response.status_code == 204:
            return UpsertResult(entity_id(response), created=True)
        return UpsertResult(str(response.json()["leadid"]), created=True)

    def who_am_i(self, correlation_id: str | None = None) -> dict[str, Any]:
        """`WhoAmI`: the caller's UserId, BusinessUnitId and OrganizationId.

        Raises:
            D365Error: the call failed.
        """
        response = self.transport.request("GET", "WhoAmI", correlation_id)
        assert response is not None
        return dict(response.json())
