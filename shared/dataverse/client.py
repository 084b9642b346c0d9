"""`DataverseClient`: the few Web API calls the lead push needs, one HTTP request per method.

No retry loops live here (the retry policy and the queue do that); every method either returns a
value or raises a `D365Error` subclass (see `errors.py`): an error answer keeps Dataverse's
`x-ms-service-request-id`, and no answer at all says whether the request was ever sent. The network
is injected: the client takes a `requests.Session` (pooled, reused across calls) and a token
provider. `last_latency_ms` is per thread: the worker threads share one client, and each reports the
latency of its own last call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from shared.dataverse.auth import TokenProvider
from shared.dataverse.errors import (
    D365APIError,
    D365Error,
    D365RateLimitError,
    error_from_response,
    request_sent,
    transport_error,
)
from shared.ids import GUID, is_guid
from shared.pacing import Pacer

logger = logging.getLogger(__name__)

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
_BASE_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    # Dataverse caches GETs per session unless told otherwise.
    "If-None-Match": "null",
}


def odata_literal(value: str) -> str:
    """`value` as an OData string literal: single quotes doubled, wrapped in quotes."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class UpsertResult:
    """The answer to a create-only upsert: the new id, or None when the key already existed."""

    lead_id: str | None
    created: bool


class DataverseClient:
    """Calls the Dataverse Web API for `leads`."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        session: requests.Session | None = None,
        api_version: str = "v9.2",
        timeout: float = 30.0,
        max_in_flight: int = 52,
        pacer: Pacer | None = None,
    ) -> None:
        """`max_in_flight` bounds the requests this client (the process) has open at once: the
        instance's share of Dataverse's 52 concurrent requests per user (`shared/concurrency.py`).
        `pacer` (one per process) spaces requests under the limits the service reports
        (`shared/pacing.py`); None sends them as they come.

        Raises:
            ValueError: `base_url` is not https (a bearer token must never travel in clear).
        """
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("Dataverse base URL must be an https:// URL")
        self.base_url = base_url.rstrip("/")
        self.api_url = f"{self.base_url}/api/data/{api_version}"
        self.tokens = tokens
        self._session = session or requests.Session()
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self.pacer = pacer
        self._latency = threading.local()

    @property
    def last_latency_ms(self) -> float:
        """How long this thread's last request took (0.0 before its first)."""
        return float(getattr(self._latency, "ms", 0.0))

    def _request(
        self,
        method: str,
        path: str,
        correlation_id: str | None,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
        absent: tuple[int, ...] = (),
        records: int = 0,
        max_wait: float | None = None,
    ) -> requests.Response | None:
        """One HTTP call (two when Dataverse refuses the token: a fresh token, sent once more).
        Returns the response on `ok`, None on `absent`, raises otherwise. `records` is how many
        records the call writes and `max_wait` how long it may wait for the pacer."""
        token = self.tokens.get_token(correlation_id)
        estimate = self._pace(records, max_wait)
        try:
            response = self._send(method, path, token, correlation_id, params, json_body, headers)
        except D365Error:
            if self.pacer is not None:
                # No answer, but the request may have run (and been charged) all the same.
                self.pacer.spent(self.last_latency_ms, records, estimate)
            raise
        if response.status_code == 401:
            # A token can be refused before its own expiry (revoked, the application user
            # disabled and enabled again, the secret rotated): renew it and resend once; only a
            # second 401 is a real authentication error.
            logger.warning(
                "d365_token_refused",
                extra={
                    "operation": _operation(method, path),
                    "auth_mode": getattr(self.tokens, "mode", None),
                    "correlation_id": correlation_id,
                },
            )
            token = self.tokens.renew(token, correlation_id)
            response = self._send(method, path, token, correlation_id, params, json_body, headers)
        error = None
        if response.status_code not in ok and response.status_code not in absent:
            error = error_from_response(response.status_code, response.content, response.headers)
        if self.pacer is not None:
            if isinstance(error, D365RateLimitError):
                self.pacer.released(estimate)
                self.pacer.refused(error.code, error.message, error.retry_after)
            else:
                self.pacer.spent(self.last_latency_ms, records, estimate)
        if error is None:
            return response if response.status_code in ok else None
        self._log_error(error, method, path, correlation_id)
        raise error

    def _pace(self, records: int = 0, max_wait: float | None = None) -> float:
        """Wait for the pacer's slot; a wait longer than `max_wait` (the pacer's own by default)
        is a local 429 (nothing sent). Returns the execution time reserved.

        Raises:
            D365RateLimitError: status 0, code `paced`, `retry_after` the wait.
        """
        if self.pacer is None:
            return 0.0
        limit = self.pacer.max_wait if max_wait is None else max_wait
        waited = 0.0
        while True:
            refusals = self.pacer.refusals
            delay, estimate = self.pacer.wait(records, limit - waited)
            if delay > limit - waited:
                raise D365RateLimitError("paced: this process is at the service-protection limit", delay, 0, "paced")
            if delay > 0:
                time.sleep(delay)
                waited += delay
            if estimate < 0:
                continue  # nothing reserved: ask again
            if self.pacer.refusals == refusals:
                return estimate
            self.pacer.released(estimate)  # a 429 came while this one slept: a new slot after it

    def _send(
        self,
        method: str,
        path: str,
        token: str,
        correlation_id: str | None,
        params: dict[str, str] | None,
        json_body: dict[str, Any] | None,
        headers: dict[str, str] | None,
    ) -> requests.Response:
        sent = dict(_BASE_HEADERS, Authorization=f"Bearer {token}")
        if correlation_id:
            sent["x-ms-client-request-id"] = correlation_id
        if json_body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        url = f"{self.api_url}/{path}"
        with self._slots:
            started = time.perf_counter()
            try:
                response = self._session.request(
                    method, url, params=params, json=json_body, headers=sent, timeout=self._timeout
                )
            except requests.RequestException as exc:
                self._latency.ms = (time.perf_counter() - started) * 1000
                error = transport_error(exc)
                self._log_error(error, method, path, correlation_id)
                # Chained for the traceback: requests' messages name the host and the path, never
                # the headers that hold the token.
                raise error from exc
            self._latency.ms = (time.perf_counter() - started) * 1000
        return response

    def _log_error(self, error: D365Error, method: str, path: str, correlation_id: str | None) -> None:
        event = "d365_rate_limited" if error.status == 429 else "d365_api_error"
        logger.warning(
            event,
            extra={
                "status_code": error.status,
                "error_code": error.code,
                "service_request_id": error.service_request_id,
                "request_sent": request_sent(error),
                "retry_after": getattr(error, "retry_after", None),
                "operation": _operation(method, path),
                "correlation_id": correlation_id,
                "latency_ms": round(self.last_latency_ms, 1),
            },
        )

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
        response = self._request("GET", f"leads({lead_id})", correlation_id, params={"$select": select}, absent=(404,))
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
            response = self._request("GET", "leads", correlation_id, params=params)
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
        response = self._request("GET", "leads", correlation_id, params=params)
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
            response = self._request("GET", "leads", correlation_id, params=params, max_wait=BULK_MAX_WAIT_SECONDS)
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
        response = self._request(
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
        response = self._request(
            "GET",
            self._key_path(column, value),
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
        response = self._request("POST", "leads", correlation_id, json_body=payload, ok=(204, 201))
        assert response is not None
        return _id_from(response)

    def create_lead_if_absent(
        self, column: str, value: str, payload: dict[str, Any], correlation_id: str | None = None
    ) -> UpsertResult:
        """Create-only upsert through an alternate key: one round trip, never a duplicate.

        `PATCH leads(col='value')` with `If-None-Match: *` creates the lead or answers 412 when a
        lead with that key exists (then `lead_id` is None: look it up with `get_lead_by_key`).

        Raises:
            D365Error: any other failure.
        """
        response = self._request(
            "PATCH",
            self._key_path(column, value),
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
            return UpsertResult(_id_from(response), created=True)
        return UpsertResult(str(response.json()["leadid"]), created=True)

    def who_am_i(self, correlation_id: str | None = None) -> dict[str, Any]:
        """`WhoAmI`: the caller's UserId, BusinessUnitId and OrganizationId.

        Raises:
            D365Error: the call failed.
        """
        response = self._request("GET", "WhoAmI", correlation_id)
        assert response is not None
        return dict(response.json())

    @staticmethod
    def _key_path(column: str, value: str) -> str:
        return f"leads({column}={quote(odata_literal(value), safe=chr(39))})"


def _operation(method: str, path: str) -> str:
    """`GET leads`, `PATCH leads`: the call without ids or keys (safe to log)."""
    return f"{method} {path.split('(')[0].split('?')[0]}"


def _id_from(response: requests.Response) -> str:
    entity = response.headers.get("OData-EntityId", "")
    found = GUID.search(entity)
    if found:
        return found.group(0).lower()
    if response.content:
        lead_id = response.json().get("leadid")
        if lead_id:
            return str(lead_id)
    raise D365APIError("Dataverse created a lead but did not say its id", response.status_code, "no_entity_id")
