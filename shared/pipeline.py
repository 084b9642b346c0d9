"""Intake and the services the push needs. No `azure.functions` here.

Intake (`accept` for one lead, `accept_batch` for many — the one intake for both message shapes)
takes validated `LeadPush`es, enqueues them (a single-lead message, or bulk messages packed by
`pack`), and records `queued`; only a batch may skip a synced domain, when its id was verified in
Dynamics recently or is verified at intake. What happens to a message on the queue is the engine's
(`shared/engine.py`, docs/design.md §5-§6). `Services` is what both need, built once per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, ServiceRequestError

from shared.config import Settings
from shared.dataverse import D365Error
from shared.mapping import belongs, identity_column
from shared.models import (
    ALREADY_EXISTS,
    MAX_MESSAGE_BYTES,
    QUEUED,
    SKIPPED,
    SYNCED,
    LeadBatch,
    LeadPush,
    Outcome,
    PushOutcome,
    SyncState,
    SyncStatus,
    iso,
    parse_iso,
    utcnow,
)
from shared.ports import Dataverse, QueueSet, StateStorePort
from shared.retry import RetryPolicy, Throttle

logger = logging.getLogger(__name__)


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
            s.retry_base_seconds,
            s.retry_cap_seconds,
            s.retry_jitter_seconds,
            s.max_attempts,
            s.claim_retry_seconds,
            s.max_throttled_seconds,
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
    _mark_queued(lead, current, services, sent_at)
    logger.info(
        "d365_push_enqueued",
        extra={"domain": lead.domain, "message_id": sent.id, "correlation_id": lead.correlation_id},
    )
    return Accepted(QUEUED, lead.domain, sent.id)


def accept_batch(leads: list[LeadPush], services: Services, concurrency: int = 16) -> list[Accepted]:
    """Enqueue many validated leads (distinct domains), answering per lead, in order: packed into
    bulk messages (version 2) of up to `HUNTER_D365_BULK_SIZE` leads within 64 KiB, or with a
    size of 1 one single-lead message (version 1) each; then each queued lead recorded `queued`.

    A synced domain whose id was verified in Dynamics less than `HUNTER_D365_VERIFY_TTL_SECONDS`
    ago is skipped (`already_exists`) unless the lead says `force`. The other synced domains are
    verified here, many ids to one Dataverse query; those found are skipped, the rest (and all of
    them if Dataverse cannot answer now) are enqueued, and the worker verifies each again.

    Raises:
        azure.core.exceptions.AzureError: the state table could not be read (nothing enqueued).
    """
    known, answers = intake_skips(leads, services)
    todo = [(index, lead) for index, lead in enumerate(leads) if index not in answers]
    sent_at = services.clock()
    size = services.settings.bulk_size
    messages: list[tuple[list[LeadPush], str]]
    if size <= 1:
        messages = [([lead], replace(lead, attempt=0, enqueued_at=iso(sent_at)).to_json()) for _, lead in todo]
    else:
        batches = pack([lead for _, lead in todo], size, iso(sent_at))
        messages = [(list(batch.leads), batch.to_json()) for batch in batches]
    index_of = {lead.domain: index for index, lead in todo}

    def enqueue(message: tuple[list[LeadPush], str]) -> list[tuple[int, Accepted]]:
        group, body = message
        try:
            sent = services.queues.push.send_message(body)
        except AzureError as exc:
            return [(index_of[lead.domain], _not_sent(lead, exc)) for lead in group]
        logger.info(
            "d365_push_enqueued",
            extra={"message_id": sent.id, "correlation_id": group[0].correlation_id, "leads": len(group)},
        )
        return [(index_of[lead.domain], Accepted(QUEUED, lead.domain, sent.id)) for lead in group]

    def mark(lead: LeadPush) -> None:
        _mark_queued(lead, known.get(lead.domain), services, sent_at)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for pairs in pool.map(enqueue, messages):
            answers.update(pairs)
        list(pool.map(mark, [lead for index, lead in todo if answers[index].status == QUEUED]))
    return [answers[index] for index in range(len(leads))]


def _not_sent(lead: LeadPush, exc: AzureError) -> Accepted:
    name = type(exc).__name__
    if isinstance(exc, ServiceRequestError):  # never sent: nothing is on the queue
        return Accepted(
            "rejected", lead.domain, error="storage_unavailable", message=f"not enqueued ({name}); try again"
        )
    # Sent, but the answer was lost (or storage failed mid-way): it may be on the queue.
    message = f"may or may not be enqueued ({name}); a retry is safe"
    return Accepted("unknown", lead.domain, error="storage_unknown", message=message)


def _mark_queued(lead: LeadPush, current: SyncState | None, services: Services, sent_at: datetime) -> None:
    try:
        services.state.mark_queued(lead.domain, lead.correlation_id, current, read=False, sent_at=sent_at)
    except AzureError as exc:
        # The message is on the queue and the worker writes the state when it claims the domain:
        # the push is accepted, only the `queued` badge is late.
        logger.warning(
            "d365_state_write_failed",
            extra={"domain": lead.domain, "error_code": type(exc).__name__, "correlation_id": lead.correlation_id},
        )


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
        publish(lead, services, SYNCED, ALREADY_EXISTS, lead_id=state.d365_lead_id, url=state.d365_url)
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
        found = services.dataverse.read_leads(ids, (identity_column(services.settings.custom_fields),), cid)
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
        if record is None or not belongs(record, lead.domain, services.settings.custom_fields):
            continue
        assert now is not None
        services.state.mark_verified(state, now)
        answers[index] = _skipped(lead, state, now, services)
    return answers


def publish(
    lead: LeadPush,
    services: Services,
    status: SyncStatus,
    outcome: Outcome,
    enqueued_at: str | None = None,
    **extra: Any,
) -> None:
    """Send one lead's outcome to the results queue (Hunter's backend reads it); `enqueued_at` is
    its message's (a lead inside a bulk message does not carry one)."""
    result = PushOutcome(
        domain=lead.domain,
        status=status,
        outcome=outcome,
        correlation_id=lead.correlation_id,
        d365_lead_id=extra.get("lead_id"),
        d365_url=extra.get("url"),
        error=extra.get("error"),
        hunter_id=lead.hunter_id,
        enqueued_at=enqueued_at or lead.enqueued_at,
        at=iso(services.clock()),
    )
    services.queues.results.send_message(result.to_json())
