"""The push engine: one set of rules for both shapes of queue message (docs/design.md §4-§6).

A message is one lead (`schema_version: 1`, what push-lead sends) or many (`schema_version: 2`,
what push-leads sends). The engine reads either as an `Envelope` — its leads and its counters —
and runs the same steps on it; only the Dataverse calls differ (`_OneByOne`: one GET / query /
create per lead, with the create-only upsert when the alternate key exists; `_Bulk`: one query per
50 ids, one `In()` lookup, one `CreateMultiple`):

1. claim every domain (another worker holds one → that lead is deferred, no attempt used);
2. verify the ids it knows (200 and the lead is this domain's → `already_exists`; 404 or another
   domain's lead → `d365_lead_verification_failed`, and a 404 is re-created as `recreated`);
3. find the rest by domain and adopt what is found (what makes a lost create answer safe);
4. create the others. A refusal that names a record (400, 409, 412, 413, 422: `RECORD_STATUSES`)
   of a call with several leads is split in halves down to the lead at fault (a duplicate key at
   that point is adopted); any other failure concerns the whole call and stops it: every lead not
   yet written gets that error at once;
5. record each lead (`synced` + outcome published; or per `RetryPolicy.decide`: retry — the leads
   left, together, in one message — or give up: `error`, poison, outcome `failed`).

Claims are renewed before each Dataverse call once half their lease has passed; a lead whose claim
is lost is dropped (the row's new writer has a message for it) and nothing is published for it.
A message whose deliveries keep ending without an answer is ended by the app before the host's
`maxDequeueCount`: a single lead to the poison queue, a batch split into single-lead messages.
Replay (`replay_poison`) sends poison messages of both shapes back with fresh counters.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from azure.core.exceptions import AzureError

from shared.config import ConfigError
from shared.dataverse import D365APIError, D365AuthenticationError, D365Error
from shared.dataverse.client import BULK_MAX_WAIT_SECONDS
from shared.dataverse.errors import request_sent
from shared.mapping import DOMAIN_COLUMN, belongs, identity_column, lead_payload, lookup_key
from shared.models import (
    ALREADY_EXISTS,
    CREATED,
    ERROR,
    FAILED,
    RECREATED,
    RETRYING,
    SCHEMA_VERSION,
    SYNCED,
    InputError,
    LeadBatch,
    LeadPush,
    Outcome,
    iso,
    parse_iso,
    parse_message,
    printable,
)
from shared.pacing import Pacer
from shared.pipeline import Services, publish
from shared.retry import Decision, queue_delay
from shared.state import Claim
from shared.storage import THREADS_PER_INVOCATION

logger = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")

# Deliveries that may end without an answer (the function raised, timed out, or its process died)
# before the app ends the message itself. Strictly below host.json's `maxDequeueCount` (5), so the
# app always sees a message once more before the host would poison it: a copy whose first delivery
# keeps crashing reaches `failed_deliveries` 4 on its fifth delivery, and the app ends it then.
# Counted across the copies the worker re-sends, because each copy starts the host's count afresh.
MAX_FAILED_DELIVERIES = 4
# Refusals that name a record (docs/design.md §6): the rest of a call's leads may be fine.
RECORD_STATUSES = frozenset({400, 409, 412, 413, 422})
# Dataverse's duplicate alternate-key answer to a create (dataverse-wire.md, "observed").
DUPLICATE_KEY_CODE = "0x80060892"
# Table and queue calls of one batch run side by side (each is one HTTP round trip to storage), as
# many as storage's connection pool keeps per invocation.
STORAGE_CONCURRENCY = THREADS_PER_INVOCATION
# How long replay hides a poison message it has read: long enough that one call sees each
# message once; the messages it cannot use are made visible again when it ends.
REPLAY_LEASE_SECONDS = 300


@dataclass(frozen=True)
class Result:
    """What happened to one lead of a message (for the trigger's logs and for tests)."""

    action: str  # done | retry | deferred | poisoned | rejected | split | claim_lost
    outcome: Outcome | None = None
    lead_id: str | None = None
    delay: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """What happened to a bulk message: a `Result` per domain."""

    action: str = "batch"
    results: dict[str, Result] = field(default_factory=dict)


@dataclass(frozen=True)
class Envelope:
    """A queue message as the engine sees it: its leads, its counters and its shape (1 or 2)."""

    leads: tuple[LeadPush, ...]
    shape: int
    attempt: int = 0
    failed_deliveries: int = 0
    throttled_seconds: int = 0
    correlation_id: str = ""
    enqueued_at: str | None = None

    @classmethod
    def of(cls, message: LeadPush | LeadBatch) -> Envelope:
        """The envelope of a decoded message."""
        leads = (message,) if isinstance(message, LeadPush) else message.leads
        shape = 1 if isinstance(message, LeadPush) else 2
        return cls(
            leads,
            shape,
            message.attempt,
            message.failed_deliveries,
            message.throttled_seconds,
            message.correlation_id,
            message.enqueued_at,
        )

    def delivered(self, dequeue_count: int) -> Envelope:
        """This copy's failed deliveries added: the host delivered it `dequeue_count` times."""
        return replace(self, failed_deliveries=self.failed_deliveries + max(0, dequeue_count - 1))

    def message(self, leads: Iterable[LeadPush], **counters: int) -> str:
        """A message of this shape holding `leads`, with these counters unless `counters` says."""
        attempt = counters.get("attempt", self.attempt)
        failed = counters.get("failed_deliveries", self.failed_deliveries)
        throttled = counters.get("throttled_seconds", self.throttled_seconds)
        leads = tuple(leads)
        if self.shape == 1:
            lead = replace(
                leads[0],
                schema_version=SCHEMA_VERSION,
                attempt=attempt,
                failed_deliveries=failed,
                throttled_seconds=throttled,
                enqueued_at=self.enqueued_at,
            )
            return lead.to_json()
        batch = LeadBatch(
            leads,
            attempt=attempt,
            failed_deliveries=failed,
            throttled_seconds=throttled,
            correlation_id=self.correlation_id,
            enqueued_at=self.enqueued_at,
        )
        return batch.to_json()

    def single(self, lead: LeadPush, **counters: int) -> str:
        """`lead` alone, as a single-lead message with this envelope's counters."""
        return replace(self, shape=1).message((lead,), **counters)

    def poison_body(self, leads: list[LeadPush]) -> str:
        """The poison message for leads given up together: their message, one lead as version 1."""
        return self.single(leads[0]) if len(leads) == 1 else self.message(leads)


# A lead's fate after the push: (outcome, lead id), the error that stopped it, or LOST (its claim
# was taken over: the row's new writer decides).
LOST = "claim_lost"
LeadResult = tuple[Outcome, str] | D365Error | ConfigError | str


# -- the entry point -----------------------------------------------------------------------------


def process_message(
    body: bytes, services: Services, rand: Callable[[], float] = random.random, dequeue_count: int = 1
) -> Result | BatchResult:
    """Handle one queue message body (already base64-decoded) of either version; `dequeue_count`
    is the host's count for this copy (1 on its first delivery). A version-1 message answers its
    lead's `Result`, a version-2 message a `BatchResult`.

    Never raises for bad input, Dataverse failures, configuration errors or a bug inside the push
    (a bug counts as a transient failure, so the attempt limit ends it).

    Raises:
        azure.core.exceptions.AzureError: storage failed (the queues or the state table); the
            host delivers the message again and the failed delivery is counted.
        shared.state.ForbiddenTransition: a state write the transition table forbids (a bug).
    """
    try:
        parsed = parse_message(body)
    except InputError as exc:
        return _reject(body, exc, services)
    if isinstance(parsed, LeadPush):
        envelope = Envelope.of(parsed).delivered(dequeue_count)
        return _run(envelope, services, rand)[parsed.domain]
    batch, refused = parsed
    for index, item, error in refused:
        _refuse_item(batch.correlation_id, index, item, error, services)
    if not batch.leads:
        return BatchResult()
    return BatchResult(results=_run(Envelope.of(batch).delivered(dequeue_count), services, rand))


def _run(envelope: Envelope, services: Services, rand: Callable[[], float]) -> dict[str, Result]:
    """The steps of the module docstring for one message; a `Result` per domain."""
    if envelope.failed_deliveries >= MAX_FAILED_DELIVERIES:
        return _crashed(envelope, services)
    policy = services.policy
    if not services.settings.enabled:
        return _defer(envelope, envelope.leads, services, policy.disabled_delay(), "disabled")
    wait = _busy_for(services, len(envelope.leads))
    if wait and policy.may_wait_throttled(envelope.throttled_seconds):
        # Dataverse told this process to hold off: wait it out without asking again. Past the
        # throttled-time bound the message goes on, and a 429 then gives it up (decide).
        return _defer(envelope, envelope.leads, services, policy.throttled_delay(wait, rand), "throttled", True)
    leads, repeated = _distinct(envelope.leads)
    if repeated:
        # The same domain twice in one message: the later ones go alone and find the first's lead.
        _parallel(services.queues.push.send_message, [envelope.single(lead) for lead in repeated])
    claims = _claim_all(leads, services)
    results: dict[str, Result] = {}
    waiting = [lead for lead in leads if lead.domain not in claims]
    if waiting:
        results.update(_defer(envelope, waiting, services, policy.claimed_delay(rand), "claimed"))
    claimed = [lead for lead in leads if lead.domain in claims]
    if claimed:
        outcomes = _push_all(envelope, claimed, claims, services)
        results.update(_record(envelope, claimed, claims, outcomes, services, rand))
    if envelope.shape == 2:
        done = sum(1 for result in results.values() if result.action == "done")
        logger.info(
            "d365_batch_processed",
            extra={**_log(envelope), "leads": len(envelope.leads), "claimed": len(claimed), "done": done},
        )
    return results


def _log(envelope: Envelope, lead: LeadPush | None = None) -> dict[str, Any]:
    """The fields every event of this message carries."""
    fields: dict[str, Any] = {"attempt": envelope.attempt, "correlation_id": envelope.correlation_id}
    if lead is not None:
        fields.update(domain=lead.domain, correlation_id=lead.correlation_id)
    return fields


def _busy_for(services: Services, records: int) -> float:
    """Seconds this process should not call Dataverse: a 429's pause, or the pacer's wait when it
    is longer than a worker thread may sleep (a shorter one is slept out by the client)."""
    pacer: Pacer | None = getattr(services.dataverse, "pacer", None)
    ready = pacer.ready_in(records) if pacer is not None else 0.0
    return max(services.throttle.remaining(), ready if ready > BULK_MAX_WAIT_SECONDS else 0.0)


def _defer(
    envelope: Envelope,
    leads: Iterable[LeadPush],
    services: Services,
    delay: float,
    reason: str,
    throttled: bool = False,
) -> dict[str, Result]:
    """The leads again after `delay` seconds, in one message, with no attempt used."""
    leads = list(leads)
    seconds = queue_delay(delay)
    counters = {"throttled_seconds": envelope.throttled_seconds + seconds} if throttled else {}
    services.queues.push.send_message(envelope.message(leads, **counters), visibility_timeout=seconds)
    logger.info(
        "d365_push_deferred",
        extra={
            **_log(envelope, leads[0] if len(leads) == 1 else None),
            "leads": len(leads),
            "delay_seconds": round(delay, 2),
            "reason": reason,
        },
    )
    return {lead.domain: Result("deferred", delay=delay) for lead in leads}


def _crashed(envelope: Envelope, services: Services) -> dict[str, Result]:
    """Too many deliveries ended without an answer. A batch is split into single-lead messages,
    each with a fresh count, so that one lead that crashes the worker cannot take the others down;
    a single lead goes to the poison queue, with `error` in the state when the domain can be
    claimed (else its claim holder's result stands)."""
    if len(envelope.leads) > 1:
        bodies = [envelope.single(lead, failed_deliveries=0) for lead in envelope.leads]
        _parallel(services.queues.push.send_message, bodies)
        logger.error(
            "d365_batch_split", extra={**_log(envelope), "leads": len(bodies), "reason": "too_many_failed_deliveries"}
        )
        return {lead.domain: Result("split") for lead in envelope.leads}
    lead = envelope.leads[0]
    reason = f"{envelope.failed_deliveries} deliveries ended without an answer (crash, timeout or storage failure)"
    claim = services.state.claim(lead.domain, lead.correlation_id)
    if claim is not None:
        return _give_up(envelope, [lead], {lead.domain: claim}, reason, services, code="too_many_failed_deliveries")
    services.queues.poison.send_message(envelope.single(lead))
    logger.error(
        "d365_push_failed",
        extra={**_log(envelope, lead), "error_code": "too_many_failed_deliveries", "reason": "error", "error": reason},
    )
    return {lead.domain: Result("poisoned", FAILED, error=reason)}


def _distinct(leads: Iterable[LeadPush]) -> tuple[list[LeadPush], list[LeadPush]]:
    first: dict[str, LeadPush] = {}
    repeated: list[LeadPush] = []
    for lead in leads:
        if lead.domain in first:
            repeated.append(lead)
        else:
            first[lead.domain] = lead
    return list(first.values()), repeated


def _parallel(call: Callable[[T], U], items: list[T]) -> list[U]:
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(STORAGE_CONCURRENCY, len(items))) as pool:
        return list(pool.map(call, items))


def _claim_all(leads: list[LeadPush], services: Services) -> dict[str, Claim]:
    """Claims for the domains no live claim holds (raises AzureError when storage fails)."""
    claims = _parallel(lambda lead: services.state.claim(lead.domain, lead.correlation_id), leads)
    return {lead.domain: claim for lead, claim in zip(leads, claims, strict=True) if claim is not None}


def _renew(claims: dict[str, Claim], services: Services) -> None:
    """Before a Dataverse call: renew every held claim past half its lease, so that the call
    (shorter than half a lease: docs/design.md §5) ends while they all hold. A claim lost is
    dropped from `claims`: the row's new writer has the domain."""
    now = services.clock()
    half = timedelta(seconds=services.settings.claim_lease_seconds / 2)

    def due(domain: str) -> bool:
        until = parse_iso(claims[domain].state.claimed_until, "claimed_until")
        return until is None or until - now < half

    stale = [domain for domain in claims if due(domain)]
    renewed = _parallel(lambda domain: services.state.renew(claims[domain]), stale)
    for domain, claim in zip(stale, renewed, strict=True):
        if claim is None:
            del claims[domain]
            logger.warning("d365_claim_lost", extra={"domain": domain, "step": "renew"})
        else:
            claims[domain] = claim


# -- Dataverse -----------------------------------------------------------------------------------


class _Calls(Protocol):
    """The Dataverse calls of one message shape."""

    def verify(self, known: dict[str, str], leads: list[LeadPush], cid: str) -> dict[str, dict[str, Any]]:
        """The records of the known ids that exist, by domain."""
        ...

    def find(self, leads: list[LeadPush], cid: str) -> dict[str, str]:
        """Ids of existing leads, by domain (nothing, when the create finds them itself)."""
        ...

    def lookup(self, leads: list[LeadPush], cid: str) -> dict[str, str]:
        """Ids of existing leads, by domain, always asked."""
        ...

    def create(self, leads: list[LeadPush], cid: str) -> dict[str, tuple[bool, str]]:
        """(adopted instead of created, id) by domain; raises D365Error for the whole call."""
        ...


class _OneByOne:
    """Single-lead messages: one GET to verify, one query to find, one create (or, with the
    alternate key, one create-only upsert that also finds)."""

    def __init__(self, services: Services) -> None:
        self._dataverse = services.dataverse
        self._settings = services.settings

    def verify(self, known: dict[str, str], leads: list[LeadPush], cid: str) -> dict[str, dict[str, Any]]:
        columns = (identity_column(self._settings.custom_fields),)
        records = {lead.domain: self._dataverse.read_lead(known[lead.domain], columns, cid) for lead in leads}
        return {domain: record for domain, record in records.items() if record is not None}

    def find(self, leads: list[LeadPush], cid: str) -> dict[str, str]:
        if self._settings.domain_key:
            return {}  # the upsert finds and creates in one call
        return self.lookup(leads, cid)

    def lookup(self, leads: list[LeadPush], cid: str) -> dict[str, str]:
        column, key = lookup_key(self._settings.custom_fields)
        found: dict[str, str] = {}
        for lead in leads:
            if self._settings.domain_key:
                lead_id = self._dataverse.get_lead_by_key(DOMAIN_COLUMN, lead.domain, cid)
            else:
                lead_id = self._dataverse.find_lead(column, key(lead.domain), cid)
            if lead_id:
                found[lead.domain] = lead_id
        return found

    def create(self, leads: list[LeadPush], cid: str) -> dict[str, tuple[bool, str]]:
        made: dict[str, tuple[bool, str]] = {}
        for lead in leads:
            payload = lead_payload(lead, self._settings.custom_fields)
            if not self._settings.domain_key:
                made[lead.domain] = (False, self._dataverse.create_lead(payload, cid))
                continue
            upsert = self._dataverse.create_lead_if_absent(DOMAIN_COLUMN, lead.domain, payload, cid)
            if upsert.created and upsert.lead_id:
                made[lead.domain] = (False, upsert.lead_id)
                continue
            existing = self._dataverse.get_lead_by_key(DOMAIN_COLUMN, lead.domain, cid)
            if existing is None:
                raise D365APIError("the lead's key existed, then vanished; retrying", 404, "key_race", transient=True)
            made[lead.domain] = (True, existing)
        return made


class _Bulk(_OneByOne):
    """Bulk messages: one query per 50 known ids, one `In()` lookup, one `CreateMultiple`."""

    def verify(self, known: dict[str, str], leads: list[LeadPush], cid: str) -> dict[str, dict[str, Any]]:
        ids = [known[lead.domain] for lead in leads]
        records = self._dataverse.read_leads(ids, (identity_column(self._settings.custom_fields),), cid)
        found = {lead.domain: records.get(known[lead.domain].lower()) for lead in leads}
        return {domain: record for domain, record in found.items() if record is not None}

    def find(self, leads: list[LeadPush], cid: str) -> dict[str, str]:
        return self.lookup(leads, cid)

    def lookup(self, leads: list[LeadPush], cid: str) -> dict[str, str]:
        column, key = lookup_key(self._settings.custom_fields)
        found = self._dataverse.find_many(column, [key(lead.domain) for lead in leads], cid)
        ids = {lead.domain: found.get(key(lead.domain).casefold()) for lead in leads}
        return {domain: lead_id for domain, lead_id in ids.items() if lead_id}

    def create(self, leads: list[LeadPush], cid: str) -> dict[str, tuple[bool, str]]:
        payloads = [lead_payload(lead, self._settings.custom_fields) for lead in leads]
        ids = self._dataverse.create_many(payloads, cid)
        return {lead.domain: (False, lead_id) for lead, lead_id in zip(leads, ids, strict=True)}


def _push_all(
    envelope: Envelope, leads: list[LeadPush], claims: dict[str, Claim], services: Services
) -> dict[str, LeadResult]:
    """Steps 2-4 for the claimed leads: an outcome, an error or LOST per domain. Never raises for
    Dataverse, configuration or a bug: an error stops the push, and every lead without an outcome
    yet gets it (a bug counts as a transient failure)."""
    outcomes: dict[str, LeadResult] = {}
    calls: _Calls = _OneByOne(services) if envelope.shape == 1 else _Bulk(services)
    try:
        _push(envelope, leads, claims, outcomes, calls, services)
    except (D365Error, ConfigError) as exc:
        if isinstance(exc, D365Error):
            _lookup_failed(envelope, leads, exc)
        outcomes.update({lead.domain: exc for lead in leads if lead.domain not in outcomes})
    except Exception as exc:  # a bug: retried like a transient error until the attempts run out
        logger.error("d365_push_crashed", extra={**_log(envelope), "error_code": type(exc).__name__})
        error = D365APIError(f"unexpected {type(exc).__name__} inside the push", 0, "unexpected_error", True)
        error.__cause__ = exc
        outcomes.update({lead.domain: error for lead in leads if lead.domain not in outcomes})
    # A lead whose claim was lost on the way is the row's new writer's: nothing is written for it.
    outcomes.update({lead.domain: LOST for lead in leads if lead.domain not in claims})
    return outcomes


def _lookup_failed(envelope: Envelope, leads: list[LeadPush], exc: D365Error) -> None:
    logger.warning(
        "d365_lead_lookup_error",
        extra={
            **_log(envelope, leads[0] if len(leads) == 1 else None),
            "status_code": exc.status,
            "error_code": exc.code,
            "service_request_id": exc.service_request_id,
        },
    )


def _push(
    envelope: Envelope,
    leads: list[LeadPush],
    claims: dict[str, Claim],
    outcomes: dict[str, LeadResult],
    calls: _Calls,
    services: Services,
) -> None:
    settings = services.settings
    cid = envelope.correlation_id
    known = {lead.domain: lead.d365_lead_id or claims[lead.domain].state.d365_lead_id for lead in leads}
    lost: set[str] = set()
    _renew(claims, services)
    checked = [lead for lead in leads if known[lead.domain] and lead.domain in claims]
    if checked:
        records = calls.verify({d: i for d, i in known.items() if i}, checked, cid)
        for lead in checked:
            lead_id = known[lead.domain]
            assert lead_id is not None
            record = records.get(lead.domain)
            if record is not None and belongs(record, lead.domain, settings.custom_fields):
                outcomes[lead.domain] = (ALREADY_EXISTS, lead_id)
                continue
            # 404: the lead was deleted (seed C.3) and is re-created. A lead of another domain: the
            # id was wrong (a caller's mistake, or worse) and is never adopted.
            if record is None:
                lost.add(lead.domain)
            logger.warning(
                "d365_lead_verification_failed",
                extra={
                    **_log(envelope, lead),
                    "d365_lead_id": lead_id,
                    "status_code": 404 if record is None else 200,
                    "reason": "not_found" if record is None else "other_domain",
                },
            )
    _renew(claims, services)
    rest = [lead for lead in leads if lead.domain not in outcomes and lead.domain in claims]
    if rest:
        found = calls.find(rest, cid)
        outcomes.update({domain: (ALREADY_EXISTS, lead_id) for domain, lead_id in found.items()})
    todo = [lead for lead in rest if lead.domain not in outcomes]
    if todo:
        _create(envelope, todo, lost, claims, outcomes, calls, services)


def names_a_record(exc: D365Error) -> bool:
    """True for a refusal of one record (the call may be split to find it); False for one that
    concerns the whole call — authentication, authorization, throttling, an outage."""
    if not isinstance(exc, D365APIError) or exc.transient:
        return False
    return exc.status in RECORD_STATUSES or exc.code == DUPLICATE_KEY_CODE


def _create(
    envelope: Envelope,
    todo: list[LeadPush],
    lost: set[str],
    claims: dict[str, Claim],
    outcomes: dict[str, LeadResult],
    calls: _Calls,
    services: Services,
) -> None:
    """Create `todo`: a refusal naming a record splits the call in halves, down to the lead at
    fault; any other failure stops the sending, and it is every unsent lead's error."""
    pending = [todo]
    while pending:
        chunk = pending.pop(0)
        _renew(claims, services)
        live = [lead for lead in chunk if lead.domain in claims]
        if not live:
            continue
        try:
            made = calls.create(live, envelope.correlation_id)
        except D365Error as exc:
            if not names_a_record(exc):
                unsent = [lead for part in [live, *pending] for lead in part if lead.domain in claims]
                outcomes.update({lead.domain: exc for lead in unsent})
                return
            if len(live) > 1:
                half = len(live) // 2
                pending[:0] = [live[:half], live[half:]]
                logger.warning(
                    "d365_batch_split",
                    extra={**_log(envelope), "leads": len(live), "status_code": exc.status, "error_code": exc.code},
                )
                continue
            outcomes[live[0].domain] = _alone(live[0], exc, calls, envelope)
            continue
        for lead in live:
            adopted, lead_id = made[lead.domain]
            fresh = RECREATED if lead.domain in lost else CREATED
            outcomes[lead.domain] = (ALREADY_EXISTS if adopted else fresh, lead_id)


def _alone(lead: LeadPush, exc: D365Error, calls: _Calls, envelope: Envelope) -> LeadResult:
    """The one lead a refused call came down to: adopted when its key was taken meanwhile."""
    if exc.code != DUPLICATE_KEY_CODE and exc.status != 412:
        return exc
    try:
        found = calls.lookup([lead], envelope.correlation_id)
    except D365Error as failed:
        return failed
    lead_id = found.get(lead.domain)
    return (ALREADY_EXISTS, lead_id) if lead_id else exc


# -- recording -------------------------------------------------------------------------------------


def _record(
    envelope: Envelope,
    leads: list[LeadPush],
    claims: dict[str, Claim],
    outcomes: dict[str, LeadResult],
    services: Services,
    rand: Callable[[], float],
) -> dict[str, Result]:
    """Write each lead's state and publish its result; the leads one error concerns are retried
    together in one message, or given up together."""
    results: dict[str, Result] = {}
    failed: dict[int, tuple[Exception, list[LeadPush]]] = {}
    synced: list[LeadPush] = []
    for lead in leads:
        outcome = outcomes[lead.domain]
        if isinstance(outcome, str):
            results[lead.domain] = Result(LOST)
        elif isinstance(outcome, tuple):
            synced.append(lead)
        else:
            failed.setdefault(id(outcome), (outcome, []))[1].append(lead)
    policy = services.policy
    for error, group in failed.values():
        decision = policy.decide(error, envelope.attempt, envelope.throttled_seconds, rand)
        if decision.action == "retry":
            results.update(_retry(envelope, group, claims, error, decision, services))
        else:
            reason = str(error) if decision.reason != "throttled_too_long" else _too_long(envelope, error)
            d365 = error if isinstance(error, D365Error) else None
            code = "config" if isinstance(error, ConfigError) else decision.reason
            results.update(_give_up(envelope, group, claims, reason, services, d365, code=code))

    def finish(lead: LeadPush) -> tuple[str, Result]:
        outcome = outcomes[lead.domain]
        assert isinstance(outcome, tuple)
        return lead.domain, _synced(envelope, lead, claims[lead.domain], outcome[0], outcome[1], services)

    results.update(_parallel(finish, synced))
    return results


def _too_long(envelope: Envelope, error: Exception) -> str:
    return f"throttled by Dataverse for {envelope.throttled_seconds} s, past the limit; last: {error}"


def _synced(
    envelope: Envelope, lead: LeadPush, claim: Claim, outcome: Outcome, lead_id: str, services: Services
) -> Result:
    now = iso(services.clock())
    url = services.settings.lead_url(lead_id)
    written = services.state.finish(
        claim,
        status=SYNCED,
        d365_lead_id=lead_id,
        d365_url=url,
        last_synced_at=now,
        last_verified_at=now,
        last_outcome=outcome,
        last_error=None,
        attempts=envelope.attempt + 1,
        next_attempt_at=None,
    )
    if written is None:
        # The claim was taken over: the row's new writer pushes this domain and its result stands
        # (its lookup finds the lead just written); nothing is published from here.
        logger.warning("d365_claim_lost", extra={**_log(envelope, lead), "d365_lead_id": lead_id, "outcome": outcome})
        return Result(LOST, outcome, lead_id)
    event = "d365_lead_already_exists" if outcome == ALREADY_EXISTS else "d365_lead_created"
    logger.info(
        event,
        extra={
            **_log(envelope, lead),
            "d365_lead_id": lead_id,
            "outcome": outcome,
            # This thread's last Dataverse call (the create, or the lookup that found the lead).
            "latency_ms": round(services.dataverse.last_latency_ms, 1),
        },
    )
    publish(lead, services, SYNCED, outcome, enqueued_at=envelope.enqueued_at, lead_id=lead_id, url=url)
    return Result("done", outcome, lead_id)


def _retry(
    envelope: Envelope,
    leads: list[LeadPush],
    claims: dict[str, Claim],
    error: Exception,
    decision: Decision,
    services: Services,
) -> dict[str, Result]:
    """One message for the leads left, after the decided delay; state `retrying` for each."""
    seconds = queue_delay(decision.delay)
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        # Retry-After concerns the application user, so every thread of this process waits it out.
        services.throttle.pause(retry_after)
    counters = {"attempt": envelope.attempt + (1 if decision.uses_attempt else 0)}
    if decision.throttled:
        counters["throttled_seconds"] = envelope.throttled_seconds + seconds
    services.queues.push.send_message(envelope.message(leads, **counters), visibility_timeout=seconds)
    next_at = iso(services.clock() + timedelta(seconds=seconds))

    def mark(lead: LeadPush) -> tuple[str, Result]:
        services.state.finish(
            claims[lead.domain],
            status=RETRYING,
            last_error=str(error),
            attempts=envelope.attempt + 1,
            next_attempt_at=next_at,
        )
        return lead.domain, Result("retry", delay=seconds, error=str(error))

    d365 = error if isinstance(error, D365Error) else None
    logger.warning(
        "d365_push_retry_scheduled",
        extra={
            **_log(envelope, leads[0] if len(leads) == 1 else None),
            "leads": len(leads),
            "delay_seconds": seconds,
            "uses_attempt": decision.uses_attempt,
            "retry_after": retry_after,
            "status_code": d365.status if d365 else None,
            "error_code": d365.code if d365 else None,
            "service_request_id": d365.service_request_id if d365 else None,
            "request_sent": request_sent(d365) if d365 else None,
        },
    )
    return dict(_parallel(mark, leads))


def _give_up(
    envelope: Envelope,
    leads: list[LeadPush],
    claims: dict[str, Claim],
    reason: str,
    services: Services,
    exc: D365Error | None = None,
    code: str = "config",
) -> dict[str, Result]:
    """`error` state for each lead, one poison message for them all (replayable), each outcome
    published — except where the claim was lost meanwhile (the new writer's result stands)."""
    services.queues.poison.send_message(envelope.poison_body(leads))

    def end(lead: LeadPush) -> tuple[str, Result]:
        written = services.state.finish(
            claims[lead.domain],
            status=ERROR,
            last_error=reason,
            last_outcome=FAILED,
            attempts=envelope.attempt + 1,
            next_attempt_at=None,
        )
        if written is None:
            logger.warning("d365_claim_lost", extra={**_log(envelope, lead), "outcome": FAILED})
            return lead.domain, Result(LOST, FAILED, error=reason)
        publish(lead, services, ERROR, FAILED, enqueued_at=envelope.enqueued_at, error=reason)
        return lead.domain, Result("poisoned", FAILED, error=reason)

    logger.error(
        "d365_push_failed",
        extra={
            **_log(envelope, leads[0] if len(leads) == 1 else None),
            "leads": len(leads),
            "status_code": exc.status if exc else None,
            "error_code": exc.code if exc else code,
            "service_request_id": exc.service_request_id if exc else None,
            "reason": "authentication" if isinstance(exc, D365AuthenticationError) else "error",
            "error": reason,
        },
    )
    return dict(_parallel(end, leads))


def _reject(body: bytes, exc: InputError, services: Services) -> Result:
    """A message that can never be processed: to the poison queue once, as it came."""
    services.queues.poison.send_message(body.decode("utf-8", "replace"))
    logger.error(
        "d365_push_rejected",
        extra={"source": "queue", "error_code": exc.code, "field": exc.field, "error": str(exc)},
    )
    return Result("rejected", error=str(exc))


def _refuse_item(correlation_id: str, index: int, item: object, error: InputError, services: Services) -> None:
    """A bad lead inside a good bulk message: to the poison queue alone, as it came."""
    services.queues.poison.send_message(json_text(item))
    logger.error(
        "d365_push_rejected",
        extra={
            "source": "queue",
            "error_code": error.code,
            "field": error.field,
            "error": str(error),
            "index": index,
            "correlation_id": correlation_id,
        },
    )


def json_text(item: object) -> str:
    """`item` as JSON text (a value JSON cannot hold is shown printable)."""
    try:
        return json.dumps(item, ensure_ascii=False)
    except (TypeError, ValueError):
        return printable(repr(item), 1000)


# -- replay ----------------------------------------------------------------------------------------


def replay_poison(services: Services, limit: int = 1000) -> dict[str, int]:
    """Move poison messages of both versions back to the push queue with fresh counters.

    The poison queue holds whatever the host or the worker put there: base64 of a message (the
    usual case), raw text the host could not base64-decode (it copies those as they came), or
    base64 of bytes that are not UTF-8. Each is read without a decode policy and decoded here; one
    that is still not a valid message stays in the poison queue, visible, counted as `invalid`,
    and never stops the messages behind it. A bulk message goes back as one bulk message; its
    invalid leads (if the host poisoned it whole) go to the poison queue alone, as the worker would
    have sent them.

    Raises:
        azure.core.exceptions.AzureError: the queues could not be reached.
    """
    counts = {"replayed": 0, "invalid": 0}
    poison = services.queues.raw(services.settings.poison_queue_name)
    kept: list[Any] = []
    while counts["replayed"] + counts["invalid"] < limit:
        wanted = min(32, limit - counts["replayed"] - counts["invalid"])
        batch = list(
            poison.receive_messages(
                messages_per_page=wanted, max_messages=wanted, visibility_timeout=REPLAY_LEASE_SECONDS
            )
        )
        if not batch:
            break
        for message in batch:
            parsed = poisoned_message(message.content)
            if parsed is None:
                counts["invalid"] += 1
                kept.append(message)
                continue
            _replay(parsed, services)
            poison.delete_message(message)
            counts["replayed"] += 1
    for message in kept:
        # Back in sight at once for the operator who peeks at the queue after this call.
        with contextlib.suppress(AzureError):
            poison.update_message(message, visibility_timeout=0)
    logger.info("d365_poison_replayed", extra=counts)
    return counts


def _replay(parsed: LeadPush | tuple[LeadBatch, list[tuple[int, object, InputError]]], services: Services) -> None:
    sent_at = services.clock()
    fresh = {"attempt": 0, "failed_deliveries": 0, "throttled_seconds": 0, "enqueued_at": iso(sent_at)}
    if isinstance(parsed, LeadPush):
        services.queues.push.send_message(replace(parsed, **fresh).to_json())  # type: ignore[arg-type]
        services.state.mark_queued(parsed.domain, parsed.correlation_id, sent_at=sent_at)
        return
    batch, refused = parsed
    for index, item, error in refused:
        _refuse_item(batch.correlation_id, index, item, error, services)
    services.queues.push.send_message(replace(batch, **fresh).to_json())  # type: ignore[arg-type]
    _parallel(
        lambda lead: services.state.mark_queued(lead.domain, lead.correlation_id, sent_at=sent_at), list(batch.leads)
    )


def poisoned_message(content: object) -> LeadPush | tuple[LeadBatch, list[tuple[int, object, InputError]]] | None:
    """The message (either version) in a poison message as it lies on the queue, or None when
    there is none (or a bulk message without one valid lead).

    Tries the content as base64 first (whitespace and line breaks allowed, as .NET's
    `Convert.FromBase64String` that the host uses allows them), then as the raw text.
    """
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content or "")
    candidates: list[bytes] = []
    compact = "".join(text.split())
    if compact:
        with contextlib.suppress(binascii.Error, ValueError):
            candidates.append(base64.b64decode(compact, validate=True))
    candidates.append(text.encode("utf-8", "surrogatepass"))
    for body in candidates:
        try:
            parsed = parse_message(body)
        except (InputError, ValueError):
            continue
        if isinstance(parsed, LeadPush) or parsed[0].leads:
            return parsed
    return None
