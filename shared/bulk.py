"""The bulk path (DESIGN §5 "Bulk path"; issue 15): many leads per queue message, pushed with one
lookup and one `CreateMultiple`, with every exactly-once guarantee of the single path.

Intake (`accept_batch`) packs validated leads into version-2 messages (`models.LeadBatch`) of up
to `HUNTER_D365_BULK_SIZE` leads within the queue's 64 KiB, and records each lead `queued`.

The worker (`process_message`; a version-1 message goes to `pipeline.process` unchanged):

1. claims every domain (the table's ETag write per domain, as the single path); leads whose
   domain another worker holds go back to the queue together, shortly, with no attempt used;
2. verifies the ids it knows (from the state or the message) with one query per 50 ids;
3. finds the rest by domain in one `Microsoft.Dynamics.CRM.In(...)` query: found → adopted
   (`already_exists`) — which is what makes a create whose response was lost safe;
4. creates the others with one `CreateMultiple` (100 leads: one request against the request
   limit, ~1 s of execution time). `lead` is a standard table, so the call is all or nothing: a
   4xx means nothing was written, and the call is split in halves and retried at once, down to
   the single lead at fault, which alone goes to the poison queue (a duplicate key at that point
   means the lead appeared meanwhile: it is looked up and adopted);
5. records each lead (`synced` + outcome, or `retrying`/`error`) and publishes each result.

A transient failure (5xx, timeout, dropped response, 429) may have committed: the leads it
touched go back to the queue as one message, and the next delivery's lookup adopts whatever was
created. A 429 waits `Retry-After` (api-limits.md: "wait for the duration to pass before sending
the request again") without using an attempt; other transient failures use one, and when the
attempts run out each lead goes alone to the poison queue. A message whose deliveries keep ending
without an answer (a crash) is split into single-lead messages, which the single path abandons.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, ServiceRequestError

from shared.config import ConfigError
from shared.dataverse import D365APIError, D365Error, D365RateLimitError
from shared.dataverse.client import BULK_MAX_WAIT_SECONDS
from shared.mapping import DOMAIN_COLUMN, WEBSITE_COLUMN, canonical_website, lead_payload
from shared.models import (
    ALREADY_EXISTS,
    CREATED,
    MAX_MESSAGE_BYTES,
    RECREATED,
    RETRYING,
    InputError,
    LeadBatch,
    LeadPush,
    Outcome,
    iso,
    parse_message,
    printable,
)
from shared.pacing import Pacer
from shared.pipeline import (
    MAX_FAILED_DELIVERIES,
    Accepted,
    Result,
    Services,
    _belongs,
    _give_up,
    _identity_column,
    _synced,
    intake_skips,
    process,
)
from shared.retry import queue_delay
from shared.state import Claim

logger = logging.getLogger(__name__)
T = TypeVar("T")
U = TypeVar("U")

# Dataverse's duplicate alternate-key answer to a create (dataverse-wire.md, "observed").
DUPLICATE_KEY_CODE = "0x80060892"
# Table and queue calls of one batch run side by side (each is one HTTP round trip to storage).
STORAGE_CONCURRENCY = 16


@dataclass(frozen=True)
class BatchResult:
    """What happened to one bulk message: a `Result` per domain (for logs and tests)."""

    action: str  # "batch"
    results: dict[str, Result] = field(default_factory=dict)


def process_message(
    body: bytes, services: Services, rand: Callable[[], float] = random.random, dequeue_count: int = 1
) -> Result | BatchResult:
    """Handle one queue message body of either version (the queue trigger's entry point).

    Raises only when storage fails (see `pipeline.process`)."""
    try:
        parsed = parse_message(body)
    except InputError:
        return process(body, services, rand, dequeue_count)  # rejected there, once, as before
    if isinstance(parsed, LeadPush):
        return process(body, services, rand, dequeue_count)
    batch, refused = parsed
    for index, item, error in refused:
        _refuse_item(batch, index, item, error, services)
    if not batch.leads:
        return BatchResult("batch")
    return process_batch(batch, services, rand, dequeue_count)


def _refuse_item(batch: LeadBatch, index: int, item: object, error: InputError, services: Services) -> None:
    """A bad lead inside a good message: to the poison queue alone, as it came."""
    services.queues.poison.send_message(json_text(item))
    logger.error(
        "d365_push_rejected",
        extra={
            "source": "queue",
            "error_code": error.code,
            "field": error.field,
            "error": str(error),
            "index": index,
            "correlation_id": batch.correlation_id,
        },
    )


def json_text(item: object) -> str:
    """`item` as JSON text (a value JSON cannot hold is shown printable)."""
    try:
        return json.dumps(item, ensure_ascii=False)
    except (TypeError, ValueError):
        return printable(repr(item), 1000)


def process_batch(
    batch: LeadBatch, services: Services, rand: Callable[[], float] = random.random, dequeue_count: int = 1
) -> BatchResult:
    """Push the leads of one bulk message (see the module docstring)."""
    batch = replace(batch, failed_deliveries=batch.failed_deliveries + max(0, dequeue_count - 1))
    log = {"correlation_id": batch.correlation_id, "attempt": batch.attempt, "leads": len(batch.leads)}
    if batch.failed_deliveries >= MAX_FAILED_DELIVERIES:
        # Crashes, not Dataverse: each lead goes on alone, and the single path abandons it.
        _send_each(services, [batch.single(lead).to_json() for lead in batch.leads])
        logger.error("d365_batch_split", extra={**log, "reason": "too_many_failed_deliveries"})
        return BatchResult("batch", {lead.domain: Result("split") for lead in batch.leads})
    delay = _hold(services, rand, len(batch.leads))
    if delay is not None:
        services.queues.push.send_message(batch.to_json(), visibility_timeout=queue_delay(delay))
        logger.info("d365_push_deferred", extra={**log, "delay_seconds": round(delay, 2), "reason": "throttled"})
        return BatchResult("batch", {lead.domain: Result("deferred", delay=delay) for lead in batch.leads})
    leads, repeated = _distinct(batch.leads)
    if repeated:
        # The same domain twice in one message: the later ones go as single-lead messages and
        # find the first one's lead.
        _send_each(services, [batch.single(lead).to_json() for lead in repeated])
    claims = _claim_all(leads, services)
    waiting = [lead for lead in leads if lead.domain not in claims]
    results: dict[str, Result] = {}
    if waiting:
        wait = services.settings.claim_retry_seconds * (1 + rand())
        services.queues.push.send_message(batch.with_leads(waiting).to_json(), visibility_timeout=queue_delay(wait))
        logger.info("d365_push_deferred", extra={**log, "leads": len(waiting), "reason": "claimed"})
        results.update({lead.domain: Result("deferred", delay=wait) for lead in waiting})
    claimed = [lead for lead in leads if lead.domain in claims]
    if not claimed:
        return BatchResult("batch", results)
    outcomes = _push_all(claimed, claims, batch, services)
    results.update(_record(batch, claimed, claims, outcomes, services, rand))
    logger.info(
        "d365_batch_processed",
        extra={**log, "done": sum(1 for r in results.values() if r.action == "done"), "claimed": len(claimed)},
    )
    return BatchResult("batch", results)


def _hold(services: Services, rand: Callable[[], float], records: int) -> float | None:
    """Seconds to put the whole message off (integration disabled, or Dataverse busy for longer
    than a worker should wait), or None to go on: a shorter wait is slept out by the Dataverse
    client once the domains are claimed, so the CreateMultiple leaves the moment the service has
    room (a trip through the queue would release and re-take every claim)."""
    if not services.settings.enabled:
        return services.settings.retry_base_seconds
    pacer: Pacer | None = getattr(services.dataverse, "pacer", None)
    wait = max(services.throttle.remaining(), pacer.ready_in(records) if pacer is not None else 0.0)
    if wait > BULK_MAX_WAIT_SECONDS:
        return wait + services.settings.retry_jitter_seconds * rand()
    return None


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


def _send_each(services: Services, bodies: list[str]) -> None:
    _parallel(services.queues.push.send_message, bodies)


def _claim_all(leads: list[LeadPush], services: Services) -> dict[str, Claim]:
    """Claims for the domains no live claim holds (raises AzureError when storage fails)."""
    claims = _parallel(lambda lead: services.state.claim(lead.domain, lead.correlation_id), leads)
    return {lead.domain: claim for lead, claim in zip(leads, claims, strict=True) if claim is not None}


# -- Dataverse ---------------------------------------------------------------------------------

LeadResult = tuple[Outcome, str] | D365Error | ConfigError  # (outcome, lead id) or why not


def _push_all(
    leads: list[LeadPush], claims: dict[str, Claim], batch: LeadBatch, services: Services
) -> dict[str, LeadResult]:
    """Steps 2-4 for the claimed leads: an outcome or an error per domain; never raises for
    Dataverse, configuration or a bug (a bug counts as a transient failure of every lead)."""
    try:
        return _push(leads, claims, batch, services)
    except (D365Error, ConfigError) as exc:
        return {lead.domain: exc for lead in leads}
    except Exception as exc:  # a bug: retried like a transient error until the attempts run out
        logger.error(
            "d365_push_crashed", extra={"correlation_id": batch.correlation_id, "error_code": type(exc).__name__}
        )
        error = D365APIError(f"unexpected {type(exc).__name__} inside the bulk push", 0, "unexpected_error", True)
        error.__cause__ = exc
        return {lead.domain: error for lead in leads}


def _push(
    leads: list[LeadPush], claims: dict[str, Claim], batch: LeadBatch, services: Services
) -> dict[str, LeadResult]:
    dataverse = services.dataverse
    settings = services.settings
    cid = batch.correlation_id
    outcomes: dict[str, LeadResult] = {}
    lost: set[str] = set()
    known = {lead.domain: lead.d365_lead_id or claims[lead.domain].state.d365_lead_id for lead in leads}
    ids = [lead_id for lead_id in known.values() if lead_id]
    if ids:
        records = dataverse.read_leads(ids, (_identity_column(settings),), cid)
        for lead in leads:
            lead_id = known[lead.domain]
            if not lead_id:
                continue
            record = records.get(lead_id.lower())
            if record is not None and _belongs(record, lead.domain, settings):
                outcomes[lead.domain] = (ALREADY_EXISTS, lead_id)
                continue
            if record is None:
                lost.add(lead.domain)
            logger.warning(
                "d365_lead_verification_failed",
                extra={
                    "domain": lead.domain,
                    "d365_lead_id": lead_id,
                    "correlation_id": lead.correlation_id,
                    "reason": "not_found" if record is None else "other_domain",
                },
            )
    rest = [lead for lead in leads if lead.domain not in outcomes]
    if not rest:
        return outcomes
    column, key = _lookup_key(settings.custom_fields)
    found = dataverse.find_many(column, [key(lead.domain) for lead in rest], cid)
    todo: list[LeadPush] = []
    for lead in rest:
        lead_id = found.get(key(lead.domain).casefold())
        if lead_id:
            outcomes[lead.domain] = (ALREADY_EXISTS, lead_id)
        else:
            todo.append(lead)
    if todo:
        outcomes.update(_create(todo, lost, batch, services))
    return outcomes


def _lookup_key(custom_fields: bool) -> tuple[str, Callable[[str], str]]:
    """The column a lead's domain is found by, and the value it holds there."""
    if custom_fields:
        return DOMAIN_COLUMN, lambda domain: domain
    return WEBSITE_COLUMN, canonical_website


def _create(todo: list[LeadPush], lost: set[str], batch: LeadBatch, services: Services) -> dict[str, LeadResult]:
    """`CreateMultiple` for `todo`; a call refused as a whole (4xx: nothing was written) is split
    in halves and each half sent again, so that only the lead at fault fails. A transient failure
    stops the sending: it and every lead not yet sent get that error (retried later)."""
    outcomes: dict[str, LeadResult] = {}
    pending = [todo]
    stop: D365Error | None = None
    while pending:
        chunk = pending.pop(0)
        if stop is not None:
            outcomes.update({lead.domain: stop for lead in chunk})
            continue
        payloads = [lead_payload(lead, services.settings.custom_fields) for lead in chunk]
        try:
            ids = services.dataverse.create_many(payloads, batch.correlation_id)
        except D365Error as exc:
            if _transient(exc):
                stop = exc
                outcomes.update({lead.domain: exc for lead in chunk})
            elif len(chunk) > 1:
                half = len(chunk) // 2
                pending[:0] = [chunk[:half], chunk[half:]]
                logger.warning(
                    "d365_batch_split",
                    extra={"correlation_id": batch.correlation_id, "leads": len(chunk), "error_code": exc.code},
                )
            else:
                outcomes[chunk[0].domain] = _alone(chunk[0], exc, services)
            continue
        for lead, lead_id in zip(chunk, ids, strict=True):
            outcomes[lead.domain] = (RECREATED if lead.domain in lost else CREATED, lead_id)
    return outcomes


def _alone(lead: LeadPush, exc: D365Error, services: Services) -> LeadResult:
    """The one lead a refused call came down to: adopted when its key was taken meanwhile."""
    if exc.code != DUPLICATE_KEY_CODE and exc.status != 412:
        return exc
    column, key = _lookup_key(services.settings.custom_fields)
    try:
        found = services.dataverse.find_many(column, [key(lead.domain)], lead.correlation_id)
    except D365Error as lookup:
        return lookup
    lead_id = found.get(key(lead.domain).casefold())
    return (ALREADY_EXISTS, lead_id) if lead_id else exc


def _transient(exc: D365Error) -> bool:
    return isinstance(exc, D365APIError) and exc.transient


# -- recording ---------------------------------------------------------------------------------


def _record(
    batch: LeadBatch,
    leads: list[LeadPush],
    claims: dict[str, Claim],
    outcomes: dict[str, LeadResult],
    services: Services,
    rand: Callable[[], float],
) -> dict[str, Result]:
    """Write each lead's state and publish its result; re-enqueue the ones to retry together."""
    retry = [lead for lead in leads if _transient_outcome(outcomes[lead.domain])]
    results: dict[str, Result] = {}
    if retry:
        results.update(_retry(batch, retry, claims, outcomes, services, rand))

    def finish(lead: LeadPush) -> tuple[str, Result]:
        outcome = outcomes[lead.domain]
        single = batch.single(lead)
        if isinstance(outcome, tuple):
            return lead.domain, _synced(single, claims[lead.domain], outcome[0], outcome[1], services)
        error = outcome if isinstance(outcome, D365Error) else None
        return lead.domain, _give_up(single, claims[lead.domain], str(outcome), services, error)

    done = [lead for lead in leads if lead.domain not in results]
    results.update(_parallel(finish, done))
    return results


def _transient_outcome(outcome: LeadResult) -> bool:
    return isinstance(outcome, D365Error) and _transient(outcome)


def _retry(
    batch: LeadBatch,
    leads: list[LeadPush],
    claims: dict[str, Claim],
    outcomes: dict[str, LeadResult],
    services: Services,
    rand: Callable[[], float],
) -> dict[str, Result]:
    """One message for all the leads to retry: 429 → after Retry-After, no attempt used; other
    transient errors → the retry policy's delay, one attempt used (exhausted → left to `_record`,
    which gives each lead up alone)."""
    error = outcomes[leads[0].domain]
    assert isinstance(error, D365Error)
    policy = services.policy
    if isinstance(error, D365RateLimitError):
        services.throttle.pause(error.retry_after)
        delay = error.retry_after + services.settings.retry_jitter_seconds * rand()
        attempt = batch.attempt
    elif policy.exhausted(batch.attempt):
        return {}
    else:
        delay = policy.delay(batch.attempt, None, rand)
        attempt = batch.attempt + 1
    seconds = queue_delay(delay)
    services.queues.push.send_message(batch.with_leads(leads, attempt).to_json(), visibility_timeout=seconds)
    next_at = iso(services.clock() + timedelta(seconds=seconds))

    def mark(lead: LeadPush) -> tuple[str, Result]:
        services.state.finish(
            claims[lead.domain],
            status=RETRYING,
            last_error=str(outcomes[lead.domain]),
            attempts=batch.attempt + 1,
            next_attempt_at=next_at,
        )
        return lead.domain, Result("retry", delay=seconds, error=str(outcomes[lead.domain]))

    logger.warning(
        "d365_push_retry_scheduled",
        extra={
            "correlation_id": batch.correlation_id,
            "leads": len(leads),
            "attempt": batch.attempt,
            "delay_seconds": seconds,
            "retry_after": getattr(error, "retry_after", None),
            "status_code": error.status,
            "error_code": error.code,
        },
    )
    return dict(_parallel(mark, leads))


# -- intake ------------------------------------------------------------------------------------


def pack(leads: list[LeadPush], size: int, sent_at: str | None) -> list[LeadBatch]:
    """`leads` in bulk messages of at most `size` leads, each within `MAX_MESSAGE_BYTES`."""
    batches: list[LeadBatch] = []
    for start in range(0, len(leads), max(1, size)):
        batches.extend(_fit(LeadBatch(tuple(leads[start : start + size]), enqueued_at=sent_at)))
    return batches


def _fit(batch: LeadBatch) -> list[LeadBatch]:
    if len(batch.leads) == 1 or len(batch.to_json().encode("utf-8")) <= MAX_MESSAGE_BYTES:
        return [batch]
    half = len(batch.leads) // 2
    return _fit(batch.with_leads(batch.leads[:half])) + _fit(batch.with_leads(batch.leads[half:]))


def accept_batch(leads: list[LeadPush], services: Services, concurrency: int = 16) -> list[Accepted]:
    """Enqueue many validated leads (distinct domains) as bulk messages; an answer per lead, in
    order. Skips and intake verification as `pipeline.accept_batch`; with
    `HUNTER_D365_BULK_SIZE=1` it is `pipeline.accept_batch` (one single-lead message each).

    Raises:
        azure.core.exceptions.AzureError: the state table could not be read (nothing enqueued).
    """
    size = services.settings.bulk_size
    if size <= 1:
        from shared.pipeline import accept_batch as one_by_one

        return one_by_one(leads, services, concurrency)
    known, answers = intake_skips(leads, services)
    todo = [(index, lead) for index, lead in enumerate(leads) if index not in answers]
    sent_at = services.clock()
    batches = pack([lead for _, lead in todo], size, iso(sent_at))
    index_of = {lead.domain: index for index, lead in todo}

    def enqueue(batch: LeadBatch) -> list[tuple[int, Accepted]]:
        try:
            sent = services.queues.push.send_message(batch.to_json())
        except ServiceRequestError as exc:
            return [(index_of[lead.domain], _not_sent(lead, "rejected", exc)) for lead in batch.leads]
        except AzureError as exc:
            return [(index_of[lead.domain], _not_sent(lead, "unknown", exc)) for lead in batch.leads]
        logger.info(
            "d365_push_enqueued",
            extra={"message_id": sent.id, "correlation_id": batch.correlation_id, "leads": len(batch.leads)},
        )
        return [(index_of[lead.domain], Accepted("queued", lead.domain, sent.id)) for lead in batch.leads]

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for pairs in pool.map(enqueue, batches):
            answers.update(pairs)
        queued = [(index, lead) for index, lead in todo if answers[index].status == "queued"]
        list(pool.map(lambda entry: _mark_queued(entry[1], known, services, sent_at), queued))
    return [answers[index] for index in range(len(leads))]


def _not_sent(lead: LeadPush, status: str, exc: AzureError) -> Accepted:
    if status == "rejected":
        return Accepted(
            "rejected",
            lead.domain,
            error="storage_unavailable",
            message=f"not enqueued ({type(exc).__name__}); try again",
        )
    return Accepted(
        "unknown",
        lead.domain,
        error="storage_unknown",
        message=f"may or may not be enqueued ({type(exc).__name__}); a retry is safe",
    )


def _mark_queued(lead: LeadPush, known: dict[str, Any], services: Services, sent_at: Any) -> None:
    try:
        services.state.mark_queued(
            lead.domain, lead.correlation_id, known.get(lead.domain), read=False, sent_at=sent_at
        )
    except AzureError as exc:
        # The message is on the queue and the worker writes the state when it claims the domain.
        logger.warning(
            "d365_state_write_failed",
            extra={"domain": lead.domain, "error_code": type(exc).__name__, "correlation_id": lead.correlation_id},
        )
