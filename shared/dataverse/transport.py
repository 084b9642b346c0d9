"""`Transport`: how one request reaches the Dataverse Web API, whatever it asks for.

What every call shares lives here, and nothing about leads: the `https` base URL and API version,
the OData headers, a bearer token from the injected `TokenProvider` (renewed and sent once more
when Dataverse answers 401), the process's bound on requests in flight, the pacing hook
(`shared/pacing.py`: wait for a slot before sending, report what was spent or refused after), and
the classification of every answer into a `D365Error` (`errors.py`) or a response the caller
expects. One request per call, no retry loop (the retry policy and the queue retry).

What the requests say — which entity set, which query, what a 204 or a 412 means for a lead — is
in `leads.py`, as Microsoft's PowerPlatform-Dataverse-Client keeps `core/_http` apart from
`operations`. `client.DataverseClient` puts the two together.

`last_latency_ms` is per thread: the worker threads share one transport, and each reports the
latency of its own last request.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests

from shared.dataverse.auth import TokenProvider
from shared.dataverse.errors import (
    D365Error,
    D365RateLimitError,
    error_from_response,
    request_sent,
    transport_error,
)
from shared.pacing import Pacer

logger = logging.getLogger(__name__)

BASE_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    # Dataverse caches GETs per session unless told otherwise.
    "If-None-Match": "null",
}


def operation_name(method: str, path: str) -> str:
    """`GET leads`, `PATCH leads`: the call without ids or keys (safe to log)."""
    return f"{method} {path.split('(')[0].split('?')[0]}"


class Transport:
    """Sends requests to one Dataverse org's Web API and classifies the answers."""

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
        """`max_in_flight` bounds the requests this transport (the process) has open at once: the
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
        self.session = session or requests.Session()
        self.timeout = timeout
        self.pacer = pacer
        self._slots = threading.BoundedSemaphore(max(1, max_in_flight))
        self._latency = threading.local()

    @property
    def last_latency_ms(self) -> float:
        """How long this thread's last request took (0.0 before its first)."""
        return float(getattr(self._latency, "ms", 0.0))

    def request(
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
        """One HTTP call to `path` under the API URL (two when Dataverse refuses the token: a fresh
        token, sent once more). Returns the response on a status in `ok`, None on one in `absent`.
        `records` is how many records the call writes and `max_wait` how long it may wait for the
        pacer.

        Raises:
            D365RateLimitError: 429, or the pacer's wait would exceed `max_wait` (status 0, `paced`).
            D365AuthenticationError: a second 401, or no token could be had.
            D365Error: any other status, or no answer (not sent, or the response lost).
        """
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
                    "operation": operation_name(method, path),
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
        """One request on the wire, within the in-flight bound.

        Raises:
            D365Error: no answer (`transport_error`: not sent, or the response lost).
        """
        sent = dict(BASE_HEADERS, Authorization=f"Bearer {token}")
        if correlation_id:
            sent["x-ms-client-request-id"] = correlation_id
        if json_body is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        url = f"{self.api_url}/{path}"
        with self._slots:
            started = time.perf_counter()
            try:
                response = self.session.request(
                    method, url, params=params, json=json_body, headers=sent, timeout=self.timeout
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
                "operation": operation_name(method, path),
                "correlation_id": correlation_id,
                "latency_ms": round(self.last_latency_ms, 1),
            },
        )
