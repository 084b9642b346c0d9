"""Reading one results-queue message: whatever lies on the queue in, an `Outcome` or `Unreadable` out.

The app sends `shared.models.PushOutcome.to_json()` through a `TextBase64EncodePolicy` client, so
a message is normally base64 of UTF-8 JSON. Like the app's poison replay (`shared/pipeline.py`
`poisoned_lead`) the consumer reads messages raw and decodes them itself, tolerating what that
tolerates: base64 with whitespace and line breaks (as .NET's `Convert.FromBase64String` does), and
JSON written without base64 by a hand or a tool. Anything else — not base64 of UTF-8 JSON nor JSON,
an unsupported `schema_version`, a missing or malformed field — is `Unreadable` and goes to the
consumer's poison queue. Unknown extra fields are ignored: the app may add fields within a schema
version.

This module does not import the app (`shared/`): the consumer depends on the wire contract only,
and `tests/unit/test_hunter_results.py` checks the constants below against the app's.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1
SYNCED, ERROR = "synced", "error"
STATUSES = frozenset({SYNCED, ERROR})
MAX_BYTES = 64 * 1024  # a queue message is at most 64 KiB
_GUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Unreadable(ValueError):
    """The message is not an outcome this consumer can apply; the text says why (never the content),
    `field` names the field at fault (None for the message as a whole)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.field = field


@dataclass(frozen=True)
class Outcome:
    """The part of an outcome that reaches Hunter's row."""

    domain: str
    status: str
    at: datetime
    d365_lead_id: str | None = None
    error: str | None = None
    outcome: str | None = None
    correlation_id: str | None = None


def read_message(content: object) -> Outcome:
    """The outcome in a results-queue message as it lies on the queue (str or bytes).

    Raises:
        Unreadable: neither base64 of an outcome nor an outcome's JSON; the reason names the first
            problem met (for the base64 reading when the content is base64).
    """
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content or "")
    if len(text) > 2 * MAX_BYTES:
        raise Unreadable("larger than a queue message")
    candidates: list[bytes] = []
    compact = "".join(text.split())
    if compact:
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.b64decode(compact, validate=True))
    candidates.append(text.encode("utf-8", "surrogatepass"))
    refusals: list[Unreadable] = []
    for body in candidates:
        try:
            return parse_outcome(body)
        except Unreadable as exc:
            refusals.append(exc)
    raise refusals[0]


def parse_outcome(body: bytes) -> Outcome:
    """An outcome from its JSON bytes.

    Raises:
        Unreadable: not UTF-8, not JSON, not an object, or a field missing or malformed.
    """
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8") from None
    except (ValueError, RecursionError):
        raise Unreadable("not JSON") from None
    if not isinstance(data, dict):
        raise Unreadable("not a JSON object")
    version = data.get("schema_version")
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise Unreadable(f"schema_version: must be {SCHEMA_VERSION}", "schema_version")
    domain = _text(data, "domain", required=True, limit=255)
    status = _text(data, "status", required=True, limit=32)
    if status not in STATUSES:
        raise Unreadable(f"status: must be one of {', '.join(sorted(STATUSES))}", "status")
    at = _moment(data)
    lead_id = _text(data, "d365_lead_id", required=status == SYNCED, limit=36)
    if lead_id is not None and not _GUID.fullmatch(lead_id):
        raise Unreadable("d365_lead_id: must be a GUID", "d365_lead_id")
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise Unreadable("error: must be a string", "error")
    assert domain is not None and status is not None
    return Outcome(
        domain=domain,
        status=status,
        at=at,
        d365_lead_id=lead_id.lower() if lead_id else None,
        error=error,
        outcome=_text(data, "outcome", required=False, limit=64),
        correlation_id=_text(data, "correlation_id", required=False, limit=128),
    )


def _text(data: dict[str, Any], name: str, *, required: bool, limit: int) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise Unreadable(f"{name}: required", name)
        return None
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise Unreadable(f"{name}: must be a string of at most {limit} printable characters", name)
    return value


def _moment(data: dict[str, Any]) -> datetime:
    """`at`, the time the app published the outcome: what ordering is decided on."""
    value = data.get("at")
    if not isinstance(value, str) or not value:
        raise Unreadable("at: required (an ISO 8601 time)", "at")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Unreadable("at: must be an ISO 8601 time", "at") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # `0001-01-01T00:00:00+01:00` has no UTC value inside datetime's range: without this the
        # OverflowError escaped `drain` and the consumer met the same message again on every pass.
        raise Unreadable("at: outside the range of dates that can be converted to UTC", "at") from None
