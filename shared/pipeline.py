"""The push use case: a lead in, one Dynamics lead out, exactly once. No `azure.functions` here.

Intake (`accept`, `accept_batch`) validates nothing itself (the caller hands it `LeadPush`es),
enqueues, and records `queued`; only a batch may skip a synced domain, when its id was verified
in Dynamics recently or is verified at intake. The worker (`process`) follows DESIGN §5:

1. claim the domain (another worker holds it → re-enqueue shortly, no attempt used);
2. verify a known id with one GET (200 and the lead is this domain's → `already_exists`;
   404 or another domain's lead → `d365_lead_verification_failed`);
3. find by domain (or, with the alternate key, skip straight to 4);
4. create (or create-only upsert: 412 → adopt) → `created` / `recreated`;
5. record `synced`, send the outcome to the results queue.

Failures: 429 and transient errors re-enqueue a copy with a delay (`retry.RetryPolicy`, with
`Retry-After` as a floor) until the attempts run out; authentication, permanent and exhausted
errors end in `error` state with the message in the poison queue, where the replay endpoint can
send it back. Bad messages go to the poison queue once and are never retried.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ServiceRequestError

from shared.config import ConfigError, Settings
from shared.dataverse import D365APIError, D365AuthenticationError, D365Error, D365RateLimitError
from shared.dataverse.errors import request_sent
from shared.domains import InvalidDomain, normalize_domain
from shared.mapping import DOMAIN_COLUMN, WEBSITE_COLUMN, canonical_website, lead_payload
from shared.models import (
    ALREADY_EXISTS,
    CREATED,
    ERROR,
    FAILED,
    QUEUED,
    RECREATED,
    RETRYING,
    SKIPPED,
    SYNCED,
    InputError,
    LeadPush,
    Outcome,
    PushOutcome,
    SyncState,
    SyncStatus,
    decode_message,
    iso,
    parse_iso,
    utcnow,
)
from shared.ports import Dataverse, QueueSet, StateStorePort
from shared.retry import RetryPolicy, Throttle, queue_delay
from shared.state import Claim

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Services:
    """What the use case needs, built once per process (`services.build_services`), or by tests
    from in-memory fakes (`tests/unit/fakes.py`): every field but the settings is a Protocol."""

    settings: Settings
    dataverse: Dataverse
    state: StateStorePort
    queues: QueueSet
    clock: Callable[[], datetime] = utcnow
    throttle: Throttle = field(default_factory=Throttle)

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy from settings."""
        s = self.settings
        return RetryPolicy(
            s.retry_base_seconds, s.retry_cap_seconds, s.retry_jitter_seconds, s.max_attempts, s.claim_retry_seconds
        )


@dataclass(frozen=True)
class Accepted:
    """The intake's answer for one lead."""

    status: str  # "queued"; in batches also "skipped", "rejected" or "unknown" (storage failed)
    domain: str
    message_id: str | None = None
    d365_lead_id: str | None = None
    d365_url: str | None = None
    last_verified_at: str | None = None
    reason: str | None = None
    error: str | None = None
    message: str | None = None

    def to_dict(self, status_url: str) -> dict[str, Any]:
        """The JSON the HTTP API returns."""
        body = {key: value for key, value in self.__dict__.items() if value is not None}
        body["status_url"] = status_url
        return body


def accept(lead: LeadPush, services: Services, current: SyncState | None = None, read: bool = True) -> Accepted:
    """Enqueue one validated lead and record `queued`.

    A domain that is already synced is enqueued too: the worker verifies its id in Dynamics
    with one GET (seed C.2: 200 → `already_exists`; C.3: 404 → re-create), so nobody is told
    "already exists" about a lead that was deleted. A caller that has already read the domain's
    state passes it with `read=False`.

    Raises:
        azure.core.exceptions.AzureError: the message could not be enqueued (nothing was).
    """
    if read:
        current = services.state.get(lead.domain)
    sent_at = services.clock()
    message = replace(lead, attempt=0, enqueued_at=iso(sent_at))
    sent = services.queues.push.send_message(message.to_json())
    try:
        services.state.mark_queued(lead.domain, lead.correlation_id, current, read=False, sent_at=sent_at)
    except AzureError as exc:
        # The message is on the queue and the worker will write the state when it claims the
        # domain: the push is accepted, only the `queued` badge is late.
        logger.warning(
            "d365_state_write_failed",
            extra={"domain": lead.domain, "error_code": type(exc).__name__, "correlation_id": lead.correlation_id},
        )
    logger.info(
        "d365_push_enqueued",
        extra={"domain": lead.domain, "message_id": sent.id, "correlation_id": lead.correlation_id},
    )
    return Accepted(QUEUED, lead.domain, sent.id)


def accept_batch(leads: list[LeadPush], services: Services, concurrency: int = 16) -> list[Accepted]:
    """Enqueue many validated leads (distinct domains), answering per lead, in order.

    A synced domain whose id was verified in Dynamics less than `HUNTER_D365_VERIFY_TTL_SECONDS`
    ago is skipped (`already_exists`) unless the lead says `force`. The other synced domains are
    verified here, many ids to one Dataverse query; those found are skipped, the rest (and all of
    them if Dataverse cannot answer now) are enqueued, and the worker verifies each again.

    Raises:
        azure.core.exceptions.AzureError: the state table could not be read (nothing enqueued).
    """
    known, answers = intake_skips(leads, services)

    def enqueue(entry: tuple[int, LeadPush]) -> tuple[int, Accepted]:
        index, lead = entry
        try:
            return index, accept(lead, services, known.get(lead.domain), read=False)
        except AzureError as exc:
            name = type(exc).__name__
            if isinstance(exc, ServiceRequestError):  # never sent: nothing is on the queue
                return index, Accepted(
                    "rejected", lead.domain, error="storage_unavailable", message=f"not enqueued ({name}); try again"
                )
            # Sent, but the answer was lost (or storage failed mid-way): it may be on the queue.
            message = f"may or may not be enqueued ({name}); a retry is safe"
            return index, Accepted("unknown", lead.domain, error="storage_unknown", message=message)

    todo = [(index, lead) for index, lead in enumerate(leads) if index not in answers]
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers.update(pool.map(enqueue, todo))
    return [answers[index] for index in range(len(leads))]


def intake_skips(leads: list[LeadPush], services: Services) -> tuple[dict[str, SyncState], dict[int, Accepted]]:
    """The states of `leads`' domains, and the answers (`skipped`) for the leads a batch need not
    enqueue: synced domains verified within the TTL, and those verified now (see `accept_batch`).

    Raises:
        azure.core.exceptions.AzureError: the state table could not be read.
    """
    known = services.state.get_many([lead.domain for lead in leads])
    answers: dict[int, Accepted] = {}
    stale: list[tuple[int, LeadPush, SyncState]] = []
    for index, lead in enumerate(leads):
        state = known.get(lead.domain)
        if state is None or not services.state.is_synced(state) or lead.d365_lead_id not in (None, state.d365_lead_id):
            continue
        if not lead.force and _verified_recently(state, services):
            answers[index] = _skipped(lead, state, state.last_verified_at, services)
        else:
            stale.append((index, lead, state))
    answers.update(_verify_at_intake(stale, services))
    return known, answers


def _verified_recently(state: SyncState, services: Services) -> bool:
    verified = parse_iso(state.last_verified_at, "last_verified_at") if state.last_verified_at else None
    ttl = services.settings.verify_ttl_seconds
    return verified is not None and ttl > 0 and services.clock() - verified < timedelta(seconds=ttl)


def _skipped(lead: LeadPush, state: SyncState, verified_at: str | None, services: Services) -> Accepted:
    """A batch's skip of a synced domain: answered `already_exists`, and published as that outcome
    too, so Hunter's row (results consumer) is refreshed whichever way the push came."""
    try:
        _publish(lead, services, SYNCED, ALREADY_EXISTS, lead_id=state.d365_lead_id, url=state.d365_url)
    except AzureError as exc:  # the skip stands; only Hunter's refresh is lost, and it is logged
        logger.warning(
            "d365_result_not_published",
            extra={"domain": lead.domain, "error_code": type(exc).__name__, "correlation_id": lead.correlation_id},
        )
    logger.info(
        "d365_lead_already_exists",
        extra={
            "domain": lead.domain,
            "d365_lead_id": state.d365_lead_id,
            "correlation_id": lead.correlation_id,
            "outcome": SKIPPED,
        },
    )
    return Accepted(SKIPPED, lead.domain, None, state.d365_lead_id, state.d365_url, verified_at, ALREADY_EXISTS)


def _verify_at_intake(stale: list[tuple[int, LeadPush, SyncState]], services: Services) -> dict[int, Accepted]:
    """Skips for the synced domains whose ids Dataverse still has (one query per 50 ids)."""
    if not stale:
        return {}
    ids = [state.d365_lead_id for _, _, state in stale if state.d365_lead_id]
    cid = stale[0][1].correlation_id
    try:
        found = services.dataverse.read_leads(ids, (_identity_column(services.settings),), cid)
    except D365Error as exc:
        # Not a reason to refuse the batch: every one of these is enqueued, and the worker
        # verifies each id itself, with its own retries.
        logger.warning(
            "d365_lead_lookup_error",
            extra={
                "step": "verify_batch",
                "status_code": exc.status,
                "error_code": exc.code,
                "service_request_id": exc.service_request_id,
                "correlation_id": cid,
            },
        )
        return {}
    now = iso(services.clock())
    answers: dict[int, Accepted] = {}
    for index, lead, state in stale:
        record = found.get(str(state.d365_lead_id).lower())
        if record is None or not _belongs(record, lead.domain, services.settings):
            continue
        assert now is not None
        services.state.mark_verified(state, now)
        answers[index] = _skipped(lead, state, now, services)
    return answers


def _identity_column(settings: Settings) -> str:
    """The lead column that says which domain a lead belongs to."""
    return DOMAIN_COLUMN if settings.custom_fields else WEBSITE_COLUMN


def _belongs(record: dict[str, Any], domain: str, settings: Settings) -> bool:
    """False when the lead's domain column names another domain. A lead with the column empty
    (made by hand in Dynamics) is taken as the caller's: there is nothing to contradict it."""
    value = record.get(_identity_column(settings))
    if not isinstance(value, str) or not value.strip():
        return True
    try:
        return normalize_domain(value) == domain
    except InvalidDomain:
        return False


@dataclass(frozen=True)
class Result:
    """What happened to one queue message (for the trigger's logs and for tests)."""

    action: str  # done | retry | deferred | poisoned | rejected
    outcome: Outcome | None = None
    lead_id: str | None = None
    delay: float = 0.0
    error: str | None = None


# Deliveries that may end without an answer (the function raised, timed out, or its process died)
# before a message goes to the poison queue: the host's own maxDequeueCount default. Counted
# across the copies the worker re-sends (deferrals, retries) in `failed_deliveries`, because each
# copy starts the host's dequeue count afresh.
MAX_FAILED_DELIVERIES = 5


def process(
    body: bytes, services: Services, rand: Callable[[], float] = random.random, dequeue_count: int = 1
) -> Result:
    """Handle one queue message body (already base64-decoded); `dequeue_count` is the host's
    count for this copy (1 on its first delivery).

    Never raises for bad input, Dataverse failures, configuration errors or a bug inside the push
    (an unexpected exception there is retried like a transient error, with the claim released,
    until the attempts run out). The host then delivers an escaped exception's copy again, and
    every such failed delivery is counted — in the copies the worker re-sends too — so that after
    `MAX_FAILED_DELIVERIES` the message goes to the poison queue instead of looping.

    Raises:
        azure.core.exceptions.AzureError: storage failed (the queues or the state table).
        shared.state.ForbiddenTransition: a state write that the transition table forbids (a bug,
            refused before it reaches the table).
    """
    try:
        lead = decode_message(body)
    except InputError as exc:
        return _reject(body, exc, services)
    lead = replace(lead, failed_deliveries=lead.failed_deliveries + max(0, dequeue_count - 1))
    log = {"domain": lead.domain, "attempt": lead.attempt, "correlation_id": lead.correlation_id}
    if lead.failed_deliveries >= MAX_FAILED_DELIVERIES:
        return _abandon(lead, services)
    policy = services.policy
    if not services.settings.enabled:
        return _defer(lead, services, policy.disabled_delay(), "disabled")
    paused = services.throttle.remaining()
    if paused:
        # A 429 told this process to hold off: wait it out without asking Dataverse again.
        return _defer(lead, services, policy.throttled_delay(paused, rand), "throttled")
    claim = services.state.claim(lead.domain, lead.correlation_id)
    if claim is None:
        return _defer(lead, services, policy.claimed_delay(rand), "claimed")
    try:
        outcome, lead_id = _push(lead, claim, services)
    except D365Error as exc:
        return _failed(lead, claim, exc, services, rand)
    except ConfigError as exc:
        return _give_up(lead, claim, str(exc), services)
    except Exception as exc:
        # A bug (or a library failing in a way nobody foresaw) inside the push. Left to escape,
        # it would keep the claim until its lease ran out and come back forever; handled here it
        # is one more attempt, and the retry policy's limit sends it to the poison queue.
        logger.error(
            "d365_push_crashed",
            extra={**log, "error_code": type(exc).__name__},
        )
        error = D365APIError(f"unexpected {type(exc).__name__} inside the push", 0, "unexpected_error", True)
        error.__cause__ = exc
        return _failed(lead, claim, error, services, rand)
    return _synced(lead, claim, outcome, lead_id, services)


def _defer(lead: LeadPush, services: Services, delay: float, reason: str) -> Result:
    """The message again after `delay` seconds, with no attempt used."""
    services.queues.push.send_message(lead.to_json(), visibility_timeout=queue_delay(delay))
    logger.info(
        "d365_push_deferred",
        extra={
            "domain": lead.domain,
            "attempt": lead.attempt,
            "correlation_id": lead.correlation_id,
            "delay_seconds": round(delay, 2),
            "reason": reason,
        },
    )
    return Result("deferred", delay=delay)


def _abandon(lead: LeadPush, services: Services) -> Result:
    """Too many deliveries ended without an answer: to the poison queue, and `error` in the state
    when the domain can be claimed (else its claim holder's result stands)."""
    reason = f"{lead.failed_deliveries} deliveries ended without an answer (crash, timeout or storage failure)"
    claim = services.state.claim(lead.domain, lead.correlation_id)
    if claim is not None:
        return _give_up(lead, claim, reason, services, code="too_many_failed_deliveries")
    services.queues.poison.send_message(lead.to_json())
    logger.error(
        "d365_push_failed",
        extra={
            "domain": lead.domain,
            "attempt": lead.attempt,
            "correlation_id": lead.correlation_id,
            "error_code": "too_many_failed_deliveries",
            "reason": "error",
            "error": reason,
        },
    )
    return Result("poisoned", FAILED, error=reason)


def _push(lead: LeadPush, claim: Claim, services: Services) -> tuple[Outcome, str]:
    """Steps 2-4: returns (outcome, lead id).

    Raises:
        D365Error: from any Dataverse call.
    """
    dataverse = services.dataverse
    cid = lead.correlation_id
    known = lead.d365_lead_id or claim.state.d365_lead_id
    lost = False
    if known:
        column = _identity_column(services.settings)
        record = _lookup(lambda: dataverse.read_lead(known, (column,), cid), lead, "verify")
        if record is not None and _belongs(record, lead.domain, services.settings):
            return ALREADY_EXISTS, known
        # 404: the lead was deleted (seed C.3) and is re-created. A lead of another domain: the
        # id was wrong (a caller's mistake, or worse) and is never adopted.
        lost = record is None
        logger.warning(
            "d365_lead_verification_failed",
            extra={
                "domain": lead.domain,
                "d365_lead_id": known,
                "correlation_id": cid,
                "status_code": 404 if lost else 200,
                "reason": "not_found" if lost else "other_domain",
            },
        )
    created = RECREATED if lost else CREATED
    payload = lead_payload(lead, services.settings.custom_fields)
    if services.settings.domain_key:
        upsert = dataverse.create_lead_if_absent(DOMAIN_COLUMN, lead.domain, payload, cid)
        if upsert.created and upsert.lead_id:
            return created, upsert.lead_id
        existing = dataverse.get_lead_by_key(DOMAIN_COLUMN, lead.domain, cid)
        if existing is None:
            raise D365APIError("the lead's key existed, then vanished; retrying", 404, "key_race", transient=True)
        return ALREADY_EXISTS, existing
    column, value = (
        (DOMAIN_COLUMN, lead.domain)
        if services.settings.custom_fields
        else (WEBSITE_COLUMN, canonical_website(lead.domain))
    )
    found = _lookup(lambda: dataverse.find_lead(column, value, cid), lead, "find")
    if found:
        return ALREADY_EXISTS, found
    return created, dataverse.create_lead(payload, cid)


def _lookup(call: Callable[[], T], lead: LeadPush, step: str) -> T:
    """Run one lookup; a failure is logged as `d365_lead_lookup_error` and raised on."""
    try:
        return call()
    except D365Error as exc:
        logger.warning(
            "d365_lead_lookup_error",
            extra={
                "domain": lead.domain,
                "step": step,
                "status_code": exc.status,
                "error_code": exc.code,
                "service_request_id": exc.service_request_id,
                "attempt": lead.attempt,
                "correlation_id": lead.correlation_id,
            },
        )
        raise


def _synced(lead: LeadPush, claim: Claim, outcome: Outcome, lead_id: str, services: Services) -> Result:
    now = iso(services.clock())
    url = services.settings.lead_url(lead_id)
    services.state.finish(
        claim,
        status=SYNCED,
        d365_lead_id=lead_id,
        d365_url=url,
        last_synced_at=now,
        last_verified_at=now,
        last_outcome=outcome,
        last_error=None,
        attempts=lead.attempt + 1,
        next_attempt_at=None,
    )
    event = "d365_lead_already_exists" if outcome == ALREADY_EXISTS else "d365_lead_created"
    logger.info(
        event,
        extra={
            "domain": lead.domain,
            "d365_lead_id": lead_id,
            "outcome": outcome,
            "attempt": lead.attempt,
            "correlation_id": lead.correlation_id,
            # This thread's last Dataverse call (the create, or the lookup that found the lead).
            "latency_ms": round(services.dataverse.last_latency_ms, 1),
        },
    )
    _publish(lead, services, SYNCED, outcome, lead_id=lead_id, url=url)
    return Result("done", outcome, lead_id)


def _failed(lead: LeadPush, claim: Claim, exc: D365Error, services: Services, rand: Callable[[], float]) -> Result:
    retryable = isinstance(exc, D365APIError) and exc.transient
    policy = services.policy
    if not retryable or policy.exhausted(lead.attempt):
        return _give_up(lead, claim, str(exc), services, exc)
    retry_after = exc.retry_after if isinstance(exc, D365RateLimitError) else None
    if retry_after is not None:
        services.throttle.pause(retry_after)
    delay = policy.delay(lead.attempt, retry_after, rand)
    seconds = queue_delay(delay)
    next_at = services.clock() + timedelta(seconds=seconds)
    services.queues.push.send_message(lead.next_attempt().to_json(), visibility_timeout=seconds)
    services.state.finish(
        claim,
        status=RETRYING,
        last_error=str(exc),
        attempts=lead.attempt + 1,
        next_attempt_at=iso(next_at),
    )
    logger.warning(
        "d365_push_retry_scheduled",
        extra={
            "domain": lead.domain,
            "attempt": lead.attempt,
            "delay_seconds": seconds,
            "retry_after": retry_after,
            "status_code": exc.status,
            "error_code": exc.code,
            "service_request_id": exc.service_request_id,
            "request_sent": request_sent(exc),
            "correlation_id": lead.correlation_id,
        },
    )
    return Result("retry", delay=seconds, error=str(exc))


def _give_up(
    lead: LeadPush,
    claim: Claim,
    reason: str,
    services: Services,
    exc: D365Error | None = None,
    code: str = "config",
) -> Result:
    """`error` state, the message to the poison queue, the outcome published. `code` names the
    cause in the event when no Dataverse error does (`config`, `too_many_failed_deliveries`)."""
    services.queues.poison.send_message(lead.to_json())
    services.state.finish(
        claim,
        status=ERROR,
        last_error=reason,
        last_outcome=FAILED,
        attempts=lead.attempt + 1,
        next_attempt_at=None,
    )
    logger.error(
        "d365_push_failed",
        extra={
            "domain": lead.domain,
            "attempt": lead.attempt,
            "correlation_id": lead.correlation_id,
            "status_code": exc.status if exc else None,
            "error_code": exc.code if exc else code,
            "service_request_id": exc.service_request_id if exc else None,
            "reason": "authentication" if isinstance(exc, D365AuthenticationError) else "error",
            "error": reason,
        },
    )
    _publish(lead, services, ERROR, FAILED, error=reason)
    return Result("poisoned", FAILED, error=reason)


def _reject(body: bytes, exc: InputError, services: Services) -> Result:
    """A message that can never be processed: to the poison queue once, as it came."""
    services.queues.poison.send_message(body.decode("utf-8", "replace"))
    logger.error(
        "d365_push_rejected",
        extra={"source": "queue", "error_code": exc.code, "field": exc.field, "error": str(exc)},
    )
    return Result("rejected", error=str(exc))


def _publish(lead: LeadPush, services: Services, status: SyncStatus, outcome: Outcome, **extra: Any) -> None:
    result = PushOutcome(
        domain=lead.domain,
        status=status,
        outcome=outcome,
        correlation_id=lead.correlation_id,
        d365_lead_id=extra.get("lead_id"),
        d365_url=extra.get("url"),
        error=extra.get("error"),
        hunter_id=lead.hunter_id,
        enqueued_at=lead.enqueued_at,
        at=iso(services.clock()),
    )
    services.queues.results.send_message(result.to_json())


# How long replay hides a poison message it has read: long enough that one call sees each
# message once; the messages it cannot use are made visible again when it ends.
REPLAY_LEASE_SECONDS = 300


def replay_poison(services: Services, limit: int = 1000) -> dict[str, int]:
    """Move poison messages back to the push queue with a fresh attempt count.

    The poison queue holds whatever the host put there: base64 of a message (the usual case),
    raw text the host could not base64-decode (it copies those as they came), or base64 of bytes
    that are not UTF-8. Each is read without a decode policy and decoded here; one that is still
    not a valid message stays in the poison queue, visible, counted as `invalid`, and never stops
    the messages behind it from being replayed.

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
            lead = poisoned_lead(message.content)
            if lead is None:
                counts["invalid"] += 1
                kept.append(message)
                continue
            sent_at = services.clock()
            fresh = replace(lead, attempt=0, failed_deliveries=0, enqueued_at=iso(sent_at))
            services.queues.push.send_message(fresh.to_json())
            services.state.mark_queued(lead.domain, lead.correlation_id, sent_at=sent_at)
            poison.delete_message(message)
            counts["replayed"] += 1
    for message in kept:
        # Back in sight at once for the operator who peeks at the queue after this call.
        with contextlib.suppress(AzureError):
            poison.update_message(message, visibility_timeout=0)
    logger.info("d365_poison_replayed", extra=counts)
    return counts


def poisoned_lead(content: object) -> LeadPush | None:
    """The lead in a poison message as it lies on the queue, or None when there is none.

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
            return decode_message(body)
        except (InputError, ValueError):
            continue
    return None
