"""Sync state on Azure Table Storage: one row per domain, ETag concurrency, per-domain claims.

A worker *claims* a domain before touching Dataverse: an ETag-conditional write of
`status=syncing`, a random `claim_token` and `claimed_until = now + lease`. Two workers holding
messages for the same domain cannot both win that write; the loser re-enqueues its message. A
worker that dies mid-push leaves a claim that simply expires. Writes that finish a push are
conditional on the claim's ETag, so a worker whose claim was taken over cannot overwrite the
newer owner's result.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.models import (
    ERROR,
    NOT_SYNCED,
    QUEUED,
    RETRYING,
    SYNCED,
    SYNCING,
    InputError,
    Outcome,
    SyncState,
    SyncStatus,
    iso,
    parse_iso,
    printable,
    utcnow,
)

logger = logging.getLogger(__name__)
ROW_KEY = "lead"
# A status this version does not know (written by a newer version before a rollback, or by hand) is
# read as `error`: a status every writer may replace, so the domain can be pushed again, and one the
# badge shows as needing attention. Unknown outcomes and unreadable times read as none, an
# unreadable counter as 0. Each (domain, field, value) is logged once per process
# (`d365_state_value_unknown`), not on every read of the row.
UNKNOWN_STATUS_READS_AS = ERROR
_UNKNOWN_LOGGED: set[tuple[str, str, str]] = set()
_UNKNOWN_LOCK = threading.Lock()

# Who may write which status over which (docs/design.md §5). `None` is "no row yet". Anything not listed
# is a bug and raises `ForbiddenTransition` before it reaches the table. Beyond the table:
# intake never writes over a live claim, nor over a row a worker already wrote for the very
# message intake just sent (same correlation id) — that message is gone from the queue, and a
# `queued` written now would have nothing behind it; `finish` needs the claim's ETag.
_EVERY = (None, NOT_SYNCED, QUEUED, SYNCING, RETRYING, SYNCED, ERROR)
TRANSITIONS: dict[str, dict[str | None, frozenset[str]]] = {
    # an accepted push (HTTP intake, a batch, a replay); SYNCING only once its claim has expired
    "intake": {before: frozenset({QUEUED}) for before in _EVERY},
    # a worker takes the domain (a claim that expired may be taken over)
    "claim": {before: frozenset({SYNCING}) for before in _EVERY},
    # the worker that holds the claim extends its lease (a long split, a slow call)
    "renew": {SYNCING: frozenset({SYNCING})},
    # the worker that holds the claim ends its push
    "finish": {SYNCING: frozenset({SYNCED, RETRYING, ERROR})},
    # intake found the lead in Dataverse: only `last_verified_at` changes
    "verify": {SYNCED: frozenset({SYNCED})},
}


class ForbiddenTransition(RuntimeError):
    """A write that `TRANSITIONS` does not allow: a bug, refused before it reaches the table."""


def check_transition(writer: str, before: SyncState | None, after: SyncState) -> None:
    """Raises ForbiddenTransition unless `writer` may turn `before` into `after`."""
    allowed = TRANSITIONS[writer].get(before.status if before is not None else None, frozenset())
    if after.status not in allowed:
        was = before.status if before is not None else "no row"
        raise ForbiddenTransition(f"{writer} may not write {after.status} over {was}")


_STATE_FIELDS = [f.name for f in fields(SyncState) if f.name not in ("domain", "etag")]


_TIME_FIELDS = ("last_synced_at", "last_verified_at", "next_attempt_at", "claimed_until", "updated_at")


def _unknown(domain: str, name: str, value: Any, read_as: Any) -> Any:
    """Log, once per (domain, field, value) in this process, that a row holds a value this version
    cannot read (`d365_state_value_unknown`); returns `read_as`, what it is read as instead."""
    shown = printable(str(value))
    with _UNKNOWN_LOCK:
        first = (domain, name, shown) not in _UNKNOWN_LOGGED
        if first:
            if len(_UNKNOWN_LOGGED) >= 10_000:  # a bound, so that a table of odd rows cannot grow it
                _UNKNOWN_LOGGED.clear()
            _UNKNOWN_LOGGED.add((domain, name, shown))
    if first:
        logger.warning(
            "d365_state_value_unknown",
            extra={"domain": domain, "field": name, "value": shown, "read_as": read_as},
        )
    return read_as


def _known(kind: type[SyncStatus] | type[Outcome], domain: str, name: str, value: Any) -> Any:
    """`value` as a member of `kind`; a value this version does not know as `error` (a status) or
    None (an outcome)."""
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except ValueError:
        return _unknown(domain, name, value, UNKNOWN_STATUS_READS_AS if kind is SyncStatus else None)


def _time(domain: str, name: str, value: Any) -> str | None:
    """A stored time as the ISO 8601 UTC text the app writes; one that is not (a hand edit, a time
    with no UTC value) as None — a claim whose end cannot be read has ended, a verification whose
    time cannot be read is done again."""
    if value is None or value == "":
        return None
    try:
        return iso(value if isinstance(value, datetime) else parse_iso(value, name))
    except (InputError, OverflowError):
        _unknown(domain, name, value, None)
        return None


def _count(domain: str, name: str, value: Any) -> int:
    """A stored counter; one that is not a whole number from 0 as 0."""
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        return int(value)
    return int(_unknown(domain, name, value, 0))


class Table(Protocol):
    """The state table: the subset of azure-data-tables' `TableClient` this store uses."""

    def get_entity(self, partition_key: str, row_key: str) -> Any:
        """One entity (its ETag in `.metadata["etag"]`); raises ResourceNotFoundError."""
        ...

    def query_entities(self, query_filter: str, *, parameters: dict[str, Any] | None = None) -> Iterable[Any]:
        """The entities matching an OData filter."""
        ...

    def create_entity(self, entity: Mapping[str, Any]) -> Mapping[str, Any]:
        """Insert; raises ResourceExistsError when the row exists."""
        ...

    def update_entity(
        self, entity: Mapping[str, Any], mode: UpdateMode = ..., *, etag: str | None = None, match_condition: Any = None
    ) -> Mapping[str, Any]:
        """Replace (or merge), conditional on `etag`; raises HttpResponseError 412 when it changed."""
        ...


@dataclass(frozen=True)
class Claim:
    """A live claim on a domain: the state as claimed, and the ETag that proves ownership."""

    state: SyncState
    token: str
    etag: str


def _precondition_failed(exc: HttpResponseError) -> bool:
    return exc.status_code in (409, 412)


class StateStore:
    """Reads and writes `SyncState` rows."""

    def __init__(self, table: Table, lease_seconds: float = 120.0, clock: Callable[[], datetime] = utcnow) -> None:
        self._table = table
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock

    def get(self, domain: str) -> SyncState | None:
        """The state of `domain`, or None if it was never seen."""
        try:
            entity = self._table.get_entity(partition_key=domain, row_key=ROW_KEY)
        except ResourceNotFoundError:
            return None
        return self._from_entity(entity)

    def get_many(self, domains: list[str]) -> dict[str, SyncState]:
        """The states of `domains` that exist, with one query per 14 domains (Table storage
        allows at most 15 comparisons in a filter: the row key and 14 partition keys) instead of
        one read each. Values travel as `parameters`, which the Tables SDK quotes and escapes."""
        found: dict[str, SyncState] = {}
        for start in range(0, len(domains), 14):
            chunk = domains[start : start + 14]
            keys = " or ".join(f"PartitionKey eq @d{i}" for i in range(len(chunk)))
            parameters = {"row": ROW_KEY, **{f"d{i}": domain for i, domain in enumerate(chunk)}}
            # The SDK finds parameters in words split at spaces: "@d4)" would be a name.
            for entity in self._table.query_entities(f"RowKey eq @row and ( {keys} )", parameters=parameters):
                state = self._from_entity(entity)
                found[state.domain] = state
        return found

    @staticmethod
    def _from_entity(entity: Any) -> SyncState:
        domain = entity["PartitionKey"]
        values = {name: entity.get(name) for name in _STATE_FIELDS}
        values["attempts"] = _count(domain, "attempts", values.get("attempts"))
        values.update({name: _time(domain, name, values.get(name)) for name in _TIME_FIELDS})
        values["status"] = _known(SyncStatus, domain, "status", values.get("status") or NOT_SYNCED)
        values["last_outcome"] = _known(Outcome, domain, "last_outcome", values.get("last_outcome"))
        return SyncState(domain=domain, etag=entity.metadata.get("etag"), **values)

    @staticmethod
    def _to_entity(state: SyncState) -> dict[str, Any]:
        entity: dict[str, Any] = {"PartitionKey": state.domain, "RowKey": ROW_KEY}
        for name in _STATE_FIELDS:
            entity[name] = getattr(state, name)
        return entity

    def _write(self, state: SyncState, etag: str | None) -> str:
        """Create (etag None) or replace-if-unchanged; returns the new ETag.

        Raises:
            ResourceExistsError: created concurrently.
            HttpResponseError: 412 when the row changed since `etag` was read.
        """
        entity = self._to_entity(replace(state, updated_at=iso(self._clock())))
        if etag is None:
            metadata = self._table.create_entity(entity)
        else:
            metadata = self._table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return str(metadata["etag"])

    def _try_write(self, state: SyncState, current: SyncState | None) -> str | None:
        """`_write` conditional on `current` (absent or unchanged); None when another writer won."""
        try:
            return self._write(state, current.etag if current else None)
        except ResourceExistsError:
            return None
        except HttpResponseError as exc:
            if _precondition_failed(exc):
                return None
            raise

    def _live_claim(self, state: SyncState | None) -> bool:
        if state is None or not state.claim_token or not state.claimed_until:
            return False
        until = parse_iso(state.claimed_until, "claimed_until")
        return until is not None and until > self._clock()

    def mark_queued(
        self,
        domain: str,
        correlation_id: str,
        current: SyncState | None = None,
        read: bool = True,
        sent_at: datetime | None = None,
    ) -> SyncState:
        """Record that a push was accepted. A push in progress keeps its status (the new message
        waits for the claim); anything else becomes `queued`. Earlier ids and links are kept.

        Losing a race to another writer is success when that writer left the domain queued or
        claimed (the message is already on the queue, and the state says so), or when a worker
        has already taken this very message (same correlation id, written after `sent_at`, when
        the message was sent): its result stands. A caller that has just read the row passes it
        as `current` with `read=False` to save a read."""
        if read:
            current = self.get(domain)
        for _ in range(5):
            if current is not None and self._live_claim(current):
                return current
            if current is not None and self._written_for(current, correlation_id, sent_at):
                return current  # a worker got to this message first: never overwrite its result
            base = current or SyncState(domain=domain)
            state = replace(
                base,
                status=QUEUED,
                correlation_id=correlation_id,
                last_error=None,
                next_attempt_at=None,
                attempts=0,
                claim_token=None,
                claimed_until=None,
            )
            check_transition("intake", current, state)
            etag = self._try_write(state, current)
            if etag is not None:
                return replace(state, etag=etag)
            current = self.get(domain)
            if current is not None and current.status == QUEUED:
                return current
        raise RuntimeError(f"state of {domain} kept changing; gave up marking it queued")

    @staticmethod
    def _written_for(state: SyncState, correlation_id: str, sent_at: datetime | None) -> bool:
        if sent_at is None or state.correlation_id != correlation_id or not state.updated_at:
            return False
        written = parse_iso(state.updated_at, "updated_at")
        return written is not None and written >= sent_at

    def mark_verified(self, state: SyncState, verified_at: str) -> bool:
        """Record that `state`'s lead id was just found in Dataverse; False (nothing written)
        when the row changed since `state` was read — the newer writer's word stands."""
        verified = replace(state, last_verified_at=verified_at)
        check_transition("verify", state, verified)
        return self._try_write(verified, state) is not None

    def claim(self, domain: str, correlation_id: str) -> Claim | None:
        """Claim `domain` for this worker, or None when another worker holds a live claim."""
        for _ in range(5):
            current = self.get(domain)
            if self._live_claim(current):
                return None
            token = uuid.uuid4().hex
            base = current or SyncState(domain=domain)
            state = replace(
                base,
                status=SYNCING,
                claim_token=token,
                correlation_id=correlation_id,
                claimed_until=iso(self._clock() + self._lease),
            )
            check_transition("claim", current, state)
            etag = self._try_write(state, current)
            if etag is None:
                continue
            return Claim(state=replace(state, etag=etag), token=token, etag=etag)
        return None

    def renew(self, claim: Claim) -> Claim | None:
        """Extend `claim`'s lease by a full lease from now (an ETag-conditional write); None when
        the claim was lost meanwhile (its lease ran out and another writer took the row)."""
        state = replace(claim.state, claimed_until=iso(self._clock() + self._lease))
        check_transition("renew", claim.state, state)
        etag = self._try_write(state, claim.state)
        return None if etag is None else Claim(state=replace(state, etag=etag), token=claim.token, etag=etag)

    def finish(self, claim: Claim, **changes: Any) -> SyncState | None:
        """Write the end of a push and release the claim; None if the claim was lost meanwhile."""
        state = replace(claim.state, claim_token=None, claimed_until=None, **changes)
        check_transition("finish", claim.state, state)
        etag = self._try_write(state, claim.state)
        return None if etag is None else replace(state, etag=etag)

    def is_synced(self, state: SyncState | None) -> bool:
        """True when the domain's lead is known to exist in Dataverse."""
        return state is not None and state.status == SYNCED and bool(state.d365_lead_id)
