"""Typed errors for Dataverse and Entra ID, grouped by what the caller must do.

    D365Error                        anything that went wrong talking to Dataverse or Entra ID
    ├── D365AuthenticationError      fix credentials: invalid_client (AADSTS7000215), a second 401
    └── D365APIError                 status, code, message, transient
        │                              transient=True  → retry later with backoff
        │                                (408, 500, 502, 503, 504: `TRANSIENT_STATUSES`)
        │                              transient=False → fix the input, the permissions or the org
        │                                (400 validation, 403 privilege, 501, 505, …)
        ├── D365RequestNotSentError  transient, status 0: the request never reached Dataverse
        │                              (connect failure, connect timeout, TLS handshake, no token):
        │                              nothing was written, a retry cannot duplicate
        ├── D365ResponseLostError    transient, status 0: the request went out and the answer was
        │                              lost (read timeout, connection dropped mid-answer): a write
        │                              may have been committed — look it up before writing again
        └── D365RateLimitError       429 service protection: retry after `retry_after` seconds

The two status-0 kinds follow azure-core's `ServiceRequestError` / `ServiceResponseError`. Not
found is not an error: lookups return None. Every error carries the HTTP status (0 when no
response arrived), the Dataverse error code (`0x80044331`, `invalid_client`, `connect_timeout`, …),
its message and, when built from a Dataverse response, the `x-ms-service-request-id` that
Microsoft support asks for; none ever carries a token or a secret.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import requests
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProxyError, SSLError

# Statuses worth the same request again later (429 is `D365RateLimitError`, with its own wait):
# 408 request timeout, 500 internal error, 502/504 a gateway, 503 unavailable. 501 (not
# implemented), 505 (HTTP version) and the rest of 5xx will answer the same again.
TRANSIENT_STATUSES = frozenset({408, 500, 502, 503, 504})
# Dataverse's own id of a request, on every Web API response; Microsoft support traces with it.
SERVICE_REQUEST_ID = "x-ms-service-request-id"


class D365Error(Exception):
    """Base class: `status` (0 when no response), `code` and `message` from the error body, and
    `service_request_id` (Dataverse's `x-ms-service-request-id`; None without a response)."""

    def __init__(self, message: str, status: int = 0, code: str = "", *, service_request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.service_request_id = service_request_id

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status else "no response"]
        if self.code:
            parts.append(self.code)
        return f"{self.message} ({', '.join(parts)})"


class D365AuthenticationError(D365Error):
    """Credentials were refused: wrong/expired secret, unknown client, token rejected (401)."""


class D365APIError(D365Error):
    """Dataverse answered with an error, or no answer came; `transient` says whether to retry."""

    def __init__(
        self,
        message: str,
        status: int = 0,
        code: str = "",
        transient: bool = False,
        *,
        service_request_id: str | None = None,
    ) -> None:
        super().__init__(message, status, code, service_request_id=service_request_id)
        self.transient = transient


class D365RequestNotSentError(D365APIError):
    """The request never reached Dataverse (azure-core's `ServiceRequestError`): nothing was done."""

    sent = False

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, 0, code, transient=True)


class D365ResponseLostError(D365APIError):
    """The request was sent and its answer lost (azure-core's `ServiceResponseError`): it may have
    been carried out."""

    sent = True

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, 0, code, transient=True)


class D365RateLimitError(D365APIError):
    """429: a service-protection limit was hit; wait `retry_after` seconds (a floor) and retry."""

    def __init__(
        self,
        message: str,
        retry_after: float,
        status: int = 429,
        code: str = "",
        *,
        service_request_id: str | None = None,
    ) -> None:
        super().__init__(message, status, code, transient=True, service_request_id=service_request_id)
        self.retry_after = retry_after


def is_transient_status(status: int) -> bool:
    """True for an HTTP status worth retrying later (`TRANSIENT_STATUSES`, and 429)."""
    return status == 429 or status in TRANSIENT_STATUSES


def request_sent(error: D365Error) -> bool | None:
    """For the events: False when the request never reached Dataverse, True when it did (an
    answer came, or it was lost after sending), None when there was no Dataverse request to speak
    of (an error raised before any, such as a bad id)."""
    if isinstance(error, D365RequestNotSentError):
        return False
    if isinstance(error, D365ResponseLostError) or error.status:
        return True
    return None


def transport_error(exc: requests.RequestException, service: str = "Dataverse") -> D365APIError:
    """The error for a request that got no answer: never sent, or sent and its answer lost.

    requests wraps urllib3: a failure to connect (refused, DNS, connect timeout, TLS handshake,
    proxy) arrives as `ConnectTimeout`, or as a `ConnectionError` (`SSLError`, `ProxyError`) around a
    `MaxRetryError` whose reason says so; a read timeout as `ReadTimeout`; a connection closed
    after the request went out as a `ConnectionError` around a `ProtocolError`. Anything not known
    to have failed before sending counts as sent: "answer lost" is the safe guess, since the worker
    then looks the lead up before creating it again.
    """
    name = type(exc).__name__
    if isinstance(exc, requests.ConnectTimeout):
        return D365RequestNotSentError(f"no connection to {service} in time ({name})", "connect_timeout")
    if isinstance(exc, requests.ReadTimeout):
        return D365ResponseLostError(f"{service} did not answer in time ({name})", "read_timeout")
    if _before_sending(exc):
        return D365RequestNotSentError(f"could not connect to {service} ({name})", "connect_error")
    return D365ResponseLostError(
        f"the connection to {service} was lost before its answer ({name})", "connection_dropped"
    )


def _before_sending(exc: requests.RequestException) -> bool:
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, SSLError):
        # urllib3 wraps TLS failures while connecting and while reading alike; only a refused
        # certificate is certain to come from the handshake, before the request went out.
        return isinstance(reason.args[0] if reason.args else None, ssl.SSLCertVerificationError)
    return isinstance(reason, ConnectTimeoutError | ProxyError)


def odata_error(body: bytes | str) -> tuple[str, str]:
    """(code, message) from an OData error body `{"error": {"code", "message"}}`; blanks if absent."""
    try:
        data: Any = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("code") or ""), str(error.get("message") or "")


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    """Seconds from a `Retry-After` header (delta-seconds; an HTTP date is not sent by Dataverse)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def error_from_response(status: int, body: bytes, headers: Any) -> D365Error:
    """Classify a non-success Dataverse response, keeping its `x-ms-service-request-id`."""
    code, message = odata_error(body)
    message = message or f"Dataverse answered HTTP {status}"
    request_id = headers.get(SERVICE_REQUEST_ID) or None
    if status == 401:
        detail = message if code else "Dataverse refused a freshly issued access token"
        return D365AuthenticationError(f"authentication failed: {detail}", status, code, service_request_id=request_id)
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return D365RateLimitError(message, retry_after, code=code, service_request_id=request_id)
    return D365APIError(message, status, code, is_transient_status(status), service_request_id=request_id)
