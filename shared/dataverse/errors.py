"""Typed errors for Dataverse and Entra ID, grouped by what the caller must do.

    D365Error                      anything that went wrong talking to Dataverse or Entra ID
    ├── D365AuthenticationError    fix credentials: invalid_client (AADSTS7000215), a second 401 from Dataverse
    └── D365APIError               status, code, message, transient
        │                            transient=True  → retry later with backoff
        │                              (5xx, timeouts, connection errors, dropped responses)
        │                            transient=False → fix the input or the permissions
        │                              (400 validation, 403 privilege, …)
        └── D365RateLimitError     429 service protection: retry after `retry_after` seconds

Not found is not an error: lookups return None. Every error carries the HTTP status (0 when no
response arrived), the Dataverse error code (`0x80044331`, `invalid_client`, …) and its message;
none ever carries a token or a secret.
"""

from __future__ import annotations

import json
from typing import Any


class D365Error(Exception):
    """Base class: `status` (0 when no response), `code` and `message` from the error body."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        parts = [f"HTTP {self.status}" if self.status else "no response"]
        if self.code:
            parts.append(self.code)
        return f"{self.message} ({', '.join(parts)})"


class D365AuthenticationError(D365Error):
    """Credentials were refused: wrong/expired secret, unknown client, token rejected (401)."""


class D365APIError(D365Error):
    """Dataverse answered with an error, or no answer came; `transient` says whether to retry."""

    def __init__(self, message: str, status: int = 0, code: str = "", transient: bool = False) -> None:
        super().__init__(message, status, code)
        self.transient = transient


class D365RateLimitError(D365APIError):
    """429: a service-protection limit was hit; wait `retry_after` seconds (a floor) and retry."""

    def __init__(self, message: str, retry_after: float, status: int = 429, code: str = "") -> None:
        super().__init__(message, status, code, transient=True)
        self.retry_after = retry_after


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
    """Classify a non-success Dataverse response."""
    code, message = odata_error(body)
    message = message or f"Dataverse answered HTTP {status}"
    if status == 401:
        detail = message if code else "Dataverse refused a freshly issued access token"
        return D365AuthenticationError(f"authentication failed: {detail}", status, code)
    if status == 429:
        return D365RateLimitError(message, parse_retry_after(headers.get("Retry-After")), code=code)
    transient = status >= 500 or status == 408
    return D365APIError(message, status, code, transient=transient)
