"""Messages and records: the lead push (HTTP body and queue message), sync state, outcomes.

Everything that crosses a wire is a frozen dataclass with `to_json`/`from_json` (or `to_dict`),
a `schema_version`, and datetimes as ISO 8601 UTC strings — the old system crashed serialising a
`datetime`, so none ever reaches `json.dumps` here.

Validation errors are `InputError(message, field=…, code=…)`: a message a caller can act on, the
field's name and a stable code.
Hostile input ends there too, never in another exception: a lone UTF-16 surrogate or a control
character in a string (code `invalid_characters`), NaN, Infinity or an integer too long to convert
in a number (`invalid_field`), a string longer than its Dataverse column counted in UTF-16 code
units (`too_long`). Error messages never echo raw input, only field names made printable.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

from shared.domains import InvalidDomain, normalize_domain
from shared.ids import is_correlation_id, is_guid

SCHEMA_VERSION = 1
MAX_MESSAGE_BYTES = 48 * 1024  # a queue message holds 64 KiB; base64 adds a third


class StringField(NamedTuple):
    """Where a Hunter string field lands in Dataverse, and how long it may be."""

    column: str | None  # the `lead` column it is written to; None: never sent to Dataverse
    max_length: int  # that column's MaxLength, in UTF-16 code units


# Hunter string field → (Dataverse column, maximum length): the one table both intake (a value that
# would not fit is refused with the field's name instead of being cut) and the mapping read.
# Dataverse's MaxLength (StringAttributeMetadata.MaxLength, learn.microsoft.com/dotnet/api/
# microsoft.xrm.sdk.metadata.stringattributemetadata.maxlength) is checked against a .NET string's
# Length and the column is a SQL Server nvarchar(n), where "n defines the string size in
# byte-pairs" (learn.microsoft.com/sql/t-sql/data-types/nchar-and-nvarchar-transact-sql): both count
# UTF-16 code units, so an emoji outside the BMP costs 2. `utf16_length` counts the same way.
STRING_FIELDS: dict[str, StringField] = {
    "company_name": StringField("companyname", 100),
    "email": StringField("emailaddress1", 100),
    "phone": StringField("telephone1", 50),
    "website": StringField("websiteurl", 200),
    "city": StringField("address1_city", 80),
    "country": StringField("address1_country", 80),
    "description": StringField("description", 2000),
    "segment": StringField("hnt_segment", 100),
    "hunter_id": StringField(None, 100),  # Hunter's own id: back on the results queue only
}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Free text may hold tabs and line breaks; names and other one-line fields may not. Everything else
# in C0, DEL and C1 is refused, not stripped: the caller learns which field to clean, and what
# reaches Dynamics is what Hunter sent.
FREE_TEXT_FIELDS = frozenset({"description"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_FREE_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# An integer longer than this fits no field (the largest takes 10 digits). Python refuses to convert
# one of more than 4,300 digits (a ValueError from inside json.loads, with no field to name), and
# converting shorter ones still costs quadratic time, so the parser hands validation a stand-in.
MAX_INTEGER_DIGITS = 30
LEAD_FIELDS = ("domain", *STRING_FIELDS, "final_score", "priority", "d365_lead_id", "force")
MESSAGE_FIELDS = (
    *LEAD_FIELDS,
    "schema_version",
    "attempt",
    "failed_deliveries",
    "throttled_seconds",
    "correlation_id",
    "enqueued_at",
)
# Bounds on the counters a message carries: far above what the retry policy and the host ever
# reach, low enough that a hostile value is refused instead of carried.
MAX_COUNTER = 1000
# `throttled_seconds` counts seconds, up to a queue message's longest life (7 days).
MAX_THROTTLED_COUNTER = 7 * 24 * 3600


class InputError(ValueError):
    """Bad input: `message` says what is wrong, `field` names where (None for the whole body),
    `code` is the stable error code of the 400 body."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field
        self.code = code

    def to_dict(self) -> dict[str, str]:
        """The 400 body: `{error, message, field?}`."""
        body = {"error": self.code, "message": str(self)}
        if self.field:
            body["field"] = self.field
        return body


class TooManyDigits:
    """Stands in for a JSON integer of more than `MAX_INTEGER_DIGITS` digits, so that validation
    can say which field held it instead of the parser failing without a name."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | TooManyDigits:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INTEGER_DIGITS else TooManyDigits(digits)


def parse_json(text: str, what: str) -> Any:
    """Parse untrusted JSON text (`what` names it in the error: "the body", "message").

    NaN and Infinity literals parse as floats, and over-long integers as `TooManyDigits`, so that
    the field validation that follows rejects them by name.

    Raises:
        InputError: not valid JSON (code invalid_json), or nested too deep.
    """
    try:
        return json.loads(text, parse_int=_parse_int)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise InputError(f"{what} is not valid JSON", code="invalid_json") from None


def utf16_length(text: str) -> int:
    """The length Dataverse counts: UTF-16 code units (a character beyond U+FFFF is 2)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def printable(text: str, limit: int = 64) -> str:
    """`text` safe to echo in an error or a log line: non-printable characters (controls, lone
    surrogates) as `\\uXXXX` escapes, cut to `limit` characters; the empty string as `""`, so that
    an error about a field named "" still names it."""
    cut = text[:limit]
    shown = "".join(char if char.isprintable() else f"\\u{ord(char):04x}" for char in cut)
    return (shown + ("…" if len(text) > limit else "")) or '""'


def _check_characters(value: str, name: str) -> None:
    """Raises InputError (invalid_characters) for a lone surrogate or a forbidden control character."""
    surrogate = _SURROGATE.search(value)
    if surrogate:
        raise InputError(
            f"contains a lone UTF-16 surrogate (U+{ord(surrogate.group()):04X}) at position "
            f"{surrogate.start() + 1}; send valid Unicode",
            field=name,
            code="invalid_characters",
        )
    control = (_CONTROL_IN_FREE_TEXT if name in FREE_TEXT_FIELDS else _CONTROL).search(value)
    if control:
        allowed = "; only tab and line breaks are allowed" if name in FREE_TEXT_FIELDS else ""
        raise InputError(
            f"contains the control character U+{ord(control.group()):04X} at position {control.start() + 1}{allowed}",
            field=name,
            code="invalid_characters",
        )


def utcnow() -> datetime:
    """Now, timezone-aware UTC (one place to read the clock)."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """A datetime as ISO 8601 UTC with a `Z`, or None."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str | None, field: str = "enqueued_at") -> datetime | None:
    """An ISO 8601 string as an aware datetime in UTC (naive means UTC).

    The conversion to UTC happens here, where the field's name is known: a time with an offset at
    either end of the calendar (`0001-01-01T00:00:00+01:00`, `9999-12-31T23:59:59-01:00`) has no
    UTC value inside `datetime`'s range, and converting it later raised a bare OverflowError.

    Raises:
        InputError: not a valid ISO 8601 timestamp, or one with no UTC value (code `invalid_date`).
    """
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        raise InputError("must be an ISO 8601 timestamp string", field=field)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("must be an ISO 8601 timestamp", field=field) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InputError(
            "is outside the range of dates that can be converted to UTC (years 1-9999)",
            field=field,
            code="invalid_date",
        ) from None


def _string(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError("must be a string", field=name, code="invalid_type")
    value = value.strip()
    _check_characters(value, name)
    length = utf16_length(value)
    if length > limit:
        raise InputError(
            f"must be at most {limit} UTF-16 code units, as Dataverse counts (got {length})",
            field=name,
            code="too_long",
        )
    return value or None


def _number(data: dict[str, Any], name: str, integer: bool) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, TooManyDigits):
        raise InputError(f"is out of range ({value.digits} digits)", field=name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError("must be a number", field=name, code="invalid_type")
    if isinstance(value, float) and not math.isfinite(value):
        # `abs(nan) > limit` is False: without this NaN passed and crashed the mapping's round().
        raise InputError("must be a finite number (not NaN or Infinity)", field=name)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise InputError("must be a whole number", field=name, code="invalid_type")
    if abs(value) > 2_147_483_647:
        raise InputError("is out of range", field=name)
    return int(value) if integer else float(value)


@dataclass(frozen=True)
class LeadPush:
    """One lead to push: the HTTP request item and, with the envelope fields, the queue message."""

    domain: str
    company_name: str | None = None
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    city: str | None = None
    country: str | None = None
    description: str | None = None
    segment: str | None = None
    hunter_id: str | None = None
    final_score: float | None = None
    priority: int | None = None
    d365_lead_id: str | None = None
    force: bool = False
    schema_version: int = SCHEMA_VERSION
    attempt: int = 0
    failed_deliveries: int = 0
    throttled_seconds: int = 0
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    enqueued_at: str | None = None

    @classmethod
    def from_request(cls, data: object, correlation_id: str | None = None) -> LeadPush:
        """Validate one lead as Hunter sends it over HTTP.

        Raises:
            InputError: naming the first field that is missing, of the wrong type or too long.
        """
        if not isinstance(data, dict):
            raise InputError("each lead must be a JSON object", code="invalid_body")
        unknown = sorted(set(data) - set(LEAD_FIELDS))
        if unknown:
            raise InputError("is not a known lead field", field=printable(unknown[0]), code="unknown_field")
        lead = cls._validated(data)
        return replace(lead, correlation_id=correlation_id or lead.correlation_id)

    @classmethod
    def from_message(cls, data: object) -> LeadPush:
        """Validate a queue message (Hunter's backend may write these directly).

        Raises:
            InputError: wrong schema version, unknown or invalid field.
        """
        if not isinstance(data, dict):
            raise InputError("the message must be a JSON object", code="invalid_message")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"must be {SCHEMA_VERSION}", field="schema_version", code="unsupported_schema")
        unknown = sorted(set(data) - set(MESSAGE_FIELDS))
        if unknown:
            raise InputError("is not a known message field", field=printable(unknown[0]), code="unknown_field")
        attempt = _counter(data, "attempt")
        failed = _counter(data, "failed_deliveries")
        throttled = _counter(data, "throttled_seconds", MAX_THROTTLED_COUNTER)
        correlation = data.get("correlation_id") or uuid.uuid4().hex
        if not is_correlation_id(correlation):
            raise InputError("must be 1-128 characters of A-Z a-z 0-9 . _ : -", field="correlation_id")
        enqueued_at = iso(parse_iso(data.get("enqueued_at")))
        lead = cls._validated(data)
        return replace(
            lead,
            attempt=attempt,
            failed_deliveries=failed,
            throttled_seconds=throttled,
            correlation_id=correlation,
            enqueued_at=enqueued_at,
        )

    @classmethod
    def _validated(cls, data: dict[str, Any]) -> LeadPush:
        if "domain" not in data or data["domain"] in (None, ""):
            raise InputError("is required", field="domain", code="missing_field")
        try:
            domain = normalize_domain(data["domain"])
        except InvalidDomain as exc:
            raise InputError(str(exc), field="domain", code="invalid_domain") from None
        strings = {name: _string(data, name, spec.max_length) for name, spec in STRING_FIELDS.items()}
        if strings["email"] and not _EMAIL.fullmatch(strings["email"]):
            raise InputError("is not an e-mail address", field="email")
        lead_id = data.get("d365_lead_id")
        if lead_id is not None and not is_guid(lead_id):
            raise InputError("must be a GUID", field="d365_lead_id")
        force = data.get("force", False)
        if not isinstance(force, bool):
            raise InputError("must be true or false", field="force", code="invalid_type")
        return cls(
            domain=domain,
            final_score=_number(data, "final_score", integer=False),
            priority=_number(data, "priority", integer=True),
            d365_lead_id=lead_id.lower() if lead_id else None,
            force=force,
            **strings,  # type: ignore[arg-type]  # every key is a str | None field
        )

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict (None fields left out)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def to_json(self) -> str:
        """The queue message body (the queue client base64-encodes it)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def next_attempt(self) -> LeadPush:
        """A copy for the next delivery: attempt + 1."""
        return replace(self, attempt=self.attempt + 1)


def _counter(data: dict[str, Any], name: str, maximum: int = MAX_COUNTER) -> int:
    value = data.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise InputError(f"must be a whole number from 0 to {maximum}", field=name, code="invalid_type")
    return value


def decode_message(body: bytes) -> LeadPush:
    """Parse a queue message body (already base64-decoded by the trigger).

    Raises:
        InputError: too large, not UTF-8, not JSON, or not a valid message.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise InputError(f"message is larger than {MAX_MESSAGE_BYTES} bytes", code="too_large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("message is not UTF-8 text", code="invalid_encoding") from None
    return LeadPush.from_message(parse_json(text, "message"))


class SyncStatus(StrEnum):
    """A domain's sync state, as Hunter's badge shows it. A StrEnum: JSON, table rows and the HTTP
    API carry the plain value (`"synced"`), byte for byte what plain strings gave."""

    NOT_SYNCED = "not_synced"
    QUEUED = "queued"
    SYNCING = "syncing"
    RETRYING = "retrying"
    SYNCED = "synced"
    ERROR = "error"


class Outcome(StrEnum):
    """How one push ended (`last_outcome`, the results queue's `outcome`)."""

    CREATED = "created"
    RECREATED = "recreated"
    ALREADY_EXISTS = "already_exists"
    SKIPPED = "skipped"
    FAILED = "failed"


# The module-level names the rest of the code reads, as aliases of the members.
NOT_SYNCED, QUEUED, SYNCING, RETRYING, SYNCED, ERROR = SyncStatus
CREATED, RECREATED, ALREADY_EXISTS, SKIPPED, FAILED = Outcome


BATCH_SCHEMA_VERSION = 2
BATCH_FIELDS = (
    "schema_version",
    "leads",
    "attempt",
    "failed_deliveries",
    "throttled_seconds",
    "correlation_id",
    "enqueued_at",
)
BATCH_LEAD_FIELDS = (*LEAD_FIELDS, "correlation_id")


@dataclass(frozen=True)
class LeadBatch:
    """A bulk message (`schema_version: 2`): many leads, pushed with one lookup and one
    `CreateMultiple`, within a queue message's 64 KiB (48 KiB of JSON before base64). Each lead
    keeps its own correlation id; the envelope counts attempts and failed deliveries for the whole
    message. The single-lead message (`schema_version: 1`, `LeadPush`) is unchanged."""

    leads: tuple[LeadPush, ...]
    schema_version: int = BATCH_SCHEMA_VERSION
    attempt: int = 0
    failed_deliveries: int = 0
    throttled_seconds: int = 0
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    enqueued_at: str | None = None

    @classmethod
    def from_message(cls, data: object) -> tuple[LeadBatch, list[tuple[int, object, InputError]]]:
        """Validate a bulk message: the batch of its valid leads, and (index, item, error) for
        each invalid one — a bad lead is refused alone, never with the others.

        Raises:
            InputError: the envelope is invalid (not an object, wrong version, bad counters,
                `leads` not a non-empty array).
        """
        if not isinstance(data, dict):
            raise InputError("the message must be a JSON object", code="invalid_message")
        if data.get("schema_version") != BATCH_SCHEMA_VERSION or isinstance(data.get("schema_version"), bool):
            raise InputError(f"must be {BATCH_SCHEMA_VERSION}", field="schema_version", code="unsupported_schema")
        unknown = sorted(set(data) - set(BATCH_FIELDS))
        if unknown:
            raise InputError("is not a known message field", field=printable(unknown[0]), code="unknown_field")
        items = data.get("leads")
        if not isinstance(items, list) or not items:
            raise InputError("must be a non-empty array of leads", field="leads", code="invalid_message")
        correlation = data.get("correlation_id") or uuid.uuid4().hex
        if not isinstance(correlation, str) or not is_correlation_id(correlation):
            raise InputError("must be 1-128 characters of A-Z a-z 0-9 . _ : -", field="correlation_id")
        attempt = _counter(data, "attempt")
        failed = _counter(data, "failed_deliveries")
        throttled = _counter(data, "throttled_seconds", MAX_THROTTLED_COUNTER)
        enqueued_at = iso(parse_iso(data.get("enqueued_at")))
        leads: list[LeadPush] = []
        refused: list[tuple[int, object, InputError]] = []
        for index, item in enumerate(items):
            try:
                leads.append(_batch_lead(item, f"{correlation[:120]}.{index}"))
            except InputError as exc:
                refused.append((index, item, exc))
        batch = cls(tuple(leads), BATCH_SCHEMA_VERSION, attempt, failed, throttled, correlation, enqueued_at)
        return batch, refused

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict: each lead's fields and correlation id, no envelope
        fields inside the leads."""
        envelope = {"attempt", "failed_deliveries", "throttled_seconds", "enqueued_at", "schema_version"}
        leads = [
            {key: value for key, value in lead.to_dict().items() if key not in envelope and value is not False}
            for lead in self.leads
        ]
        body: dict[str, Any] = {
            "schema_version": self.schema_version,
            "correlation_id": self.correlation_id,
            "attempt": self.attempt,
            "failed_deliveries": self.failed_deliveries,
            "throttled_seconds": self.throttled_seconds,
            "enqueued_at": self.enqueued_at,
            "leads": leads,
        }
        return {key: value for key, value in body.items() if value is not None}

    def to_json(self) -> str:
        """The queue message body (the queue client base64-encodes it)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def with_leads(self, leads: list[LeadPush] | tuple[LeadPush, ...], attempt: int | None = None) -> LeadBatch:
        """A copy holding `leads` (and `attempt`, when given)."""
        return replace(self, leads=tuple(leads), attempt=self.attempt if attempt is None else attempt)

    def single(self, lead: LeadPush) -> LeadPush:
        """`lead` as a single-lead message carrying this batch's counters (for the poison queue,
        where the replay endpoint reads single-lead messages)."""
        return replace(
            lead,
            schema_version=SCHEMA_VERSION,
            attempt=self.attempt,
            failed_deliveries=self.failed_deliveries,
            throttled_seconds=self.throttled_seconds,
            enqueued_at=self.enqueued_at,
        )


def _batch_lead(item: object, default_correlation: str) -> LeadPush:
    if not isinstance(item, dict):
        raise InputError("each lead must be a JSON object", code="invalid_body")
    unknown = sorted(set(item) - set(BATCH_LEAD_FIELDS))
    if unknown:
        raise InputError("is not a known lead field", field=printable(unknown[0]), code="unknown_field")
    correlation = item.get("correlation_id") or default_correlation
    if not isinstance(correlation, str) or not is_correlation_id(correlation):
        raise InputError("must be 1-128 characters of A-Z a-z 0-9 . _ : -", field="correlation_id")
    return replace(LeadPush._validated(item), correlation_id=correlation)


def parse_message(body: bytes) -> LeadPush | tuple[LeadBatch, list[tuple[int, object, InputError]]]:
    """A queue message body as a single lead (version 1) or a batch (version 2, with its refused
    items).

    Raises:
        InputError: too large, not UTF-8, not JSON, or not a valid message of either version.
    """
    if len(body) > MAX_MESSAGE_BYTES:
        raise InputError(f"message is larger than {MAX_MESSAGE_BYTES} bytes", code="too_large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("message is not UTF-8 text", code="invalid_encoding") from None
    data = parse_json(text, "message")
    if isinstance(data, dict) and data.get("schema_version") == BATCH_SCHEMA_VERSION:
        return LeadBatch.from_message(data)
    return LeadPush.from_message(data)


@dataclass(frozen=True)
class SyncState:
    """What the app knows about one domain's lead (a row of the state table)."""

    domain: str
    status: SyncStatus = SyncStatus.NOT_SYNCED
    d365_lead_id: str | None = None
    d365_url: str | None = None
    last_synced_at: str | None = None
    last_verified_at: str | None = None
    last_outcome: Outcome | None = None
    last_error: str | None = None
    attempts: int = 0
    next_attempt_at: str | None = None
    correlation_id: str | None = None
    claim_token: str | None = None
    claimed_until: str | None = None
    updated_at: str | None = None
    etag: str | None = None

    PUBLIC_FIELDS = (
        "domain",
        "status",
        "d365_lead_id",
        "d365_url",
        "last_synced_at",
        "last_verified_at",
        "last_outcome",
        "last_error",
        "attempts",
        "next_attempt_at",
    )

    def public(self) -> dict[str, Any]:
        """What `GET /leads/{domain}` shows: no claim internals."""
        return {name: getattr(self, name) for name in self.PUBLIC_FIELDS}


@dataclass(frozen=True)
class PushOutcome:
    """The end of one push, sent to the results queue for Hunter's backend."""

    domain: str
    status: SyncStatus
    outcome: Outcome
    correlation_id: str
    d365_lead_id: str | None = None
    d365_url: str | None = None
    error: str | None = None
    hunter_id: str | None = None
    enqueued_at: str | None = None
    at: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The results-queue message body."""
        body = {key: value for key, value in asdict(self).items() if value is not None}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
