"""The push use case: a lead in, one Dynamics lead out, exactly once. No `azure.functions` here.

Intake (`accept`) validates nothing itself (the caller hands it a `LeadPush`), skips a domain that
is already synced, enqueues, and records `queued`. The worker (`process`) follows DESIGN §5:

1. claim the domain (another worker holds it → re-enqueue shortly, no attempt used);
2. verify a known id with one GET (200 → `already_exists`; 404 → `d365_lead_verification_failed`);
3. find by domain (or, with the alternate key, skip straight to 4);
4. create (or create-only upsert: 412 → adopt) → `created` / `recreated`;
5. record `synced`, send the outcome to the results queue.

Failures: 429 and transient errors re-enqueue a copy with a delay (`retry.RetryPolicy`, with
`Retry-After` as a floor) until the attempts run out; authentication, permanent and exhausted
errors end in `error` state with the message in the poison queue, where the replay endpoint can
send it back. Bad messages go to the poison queue once and are never retried.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.config import ConfigError, Settings
from shared.dataverse import D365APIError, D365AuthenticationError, D365Error, D365RateLimitError, DataverseClient
from shared.mapping import DOMAIN_COLUMN, WEBSITE_COLUMN, canonical_website, lead_payload
from shared.models import (
    ALREADY_EXISTS,
    CREATED,
    ERROR,
    FAILED,
    RECREATED,
    RETRYING,
    SKIPPED,
    SYNCED,
    InputError,
    LeadPush,
    PushOutcome,
    SyncState,
    decode_message,
    iso,
    utcnow,
)
from shared.retry import RetryPolicy, Throttle, queue_delay
from shared.state import Claim, StateStore
from shared.storage import Queues

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """What the use case needs, built once per process (see `function_app`), or by tests."""

    settings: Settings
    dataverse: DataverseClient
    state: StateStore
    queues: Queues
    clock: Callable[[], datetime] = utcnow
    throttle: Throttle = field(default_factory=Throttle)

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy from settings."""
        s = self.settings
        return RetryPolicy(s.retry_base_seconds, s.retry_cap_seconds, s.retry_jitter_seconds, s.max_attempts)


@dataclass(frozen=True)
class Accepted:
    """The intake's answer for one lead."""

    status: str  # "queued" or "skipped"
    domain: str
    message_id: str | None = None
    d365_lead_id: str | None = None
    d365_url: str | None = None
    reason: str | None = None

    def to_dict(self, status_url: str) -> dict[str, Any]:
        """The JSON the HTTP API returns."""
        body = {key: value for key, value in self.__dict__.items() if value is not None}
        body["status_url"] = status_url
        return body


def accept(lead: LeadPush, services: Services, current: SyncState | None = None, read: bool = True) -> Accepted:
    """Enqueue one validated lead, unless its domain is already synced (and not `force`d).
    A caller that has already read the domain's state (a batch) passes it with `read=False`.

    Raises:
        azure.core.exceptions.AzureError: the queue or the table could not be reached.
    """
    if read:
        current = services.state.get(lead.domain)
    if (
        services.state.is_synced(current)
        and not lead.force
        and current is not None
        and lead.d365_lead_id in (None, current.d365_lead_id)
    ):
        logger.info(
            "d365_lead_already_exists",
            extra={
                "domain": lead.domain,
                "d365_lead_id": current.d365_lead_id,
                "correlation_id": lead.correlation_id,
                "outcome": SKIPPED,
            },
        )
        return Accepted(SKIPPED, lead.domain, None, current.d365_lead_id, current.d365_url, ALREADY_EXISTS)
    message = replace(lead, attempt=0, enqueued_at=iso(services.clock()))
    sent = services.queues.push.send_message(message.to_json())
    services.state.mark_queued(lead.domain, lead.correlation_id, current, read=False)
    logger.info(
        "d365_push_enqueued",
        extra={"domain": lead.domain, "message_id": sent.id, "correlation_id": lead.correlation_id},
    )
    return Accepted("queued", lead.domain, sent.id)


@dataclass(frozen=True)
class Result:
    """What happened to one queue message (for the trigger's logs and for tests)."""

    action: str  # done | retry | deferred | poisoned | rejected
    outcome: str | None = None
    lead_id: str | None = None
    delay: float = 0.0
    error: str | None = None


def process(body: bytes, services: Services, rand: Callable[[], float] = random.random) -> Result:
    """Handle one queue message body (already base64-decoded). Never raises for bad input or
    Dataverse failures; raises only when storage itself fails (the host then retries).
    """
    try:
        lead = decode_message(body)
    except InputError as exc:
        return _reject(body, exc, services)
    log = {"domain": lead.domain, "attempt": lead.attempt, "correlation_id": lead.correlation_id}
    if not services.settings.enabled:
        delay = services.settings.retry_base_seconds
        services.queues.push.send_message(lead.to_json(), visibility_timeout=queue_delay(delay))
        logger.info("d365_push_deferred", extra={**log, "delay_seconds": delay, "reason": "disabled"})
        return Result("deferred", delay=delay)
    paused = services.throttle.remaining()
    if paused:
        # A 429 told this process to hold off: wait it out without asking Dataverse again.
        delay = paused + services.settings.retry_jitter_seconds * rand()
        services.queues.push.send_message(lead.to_json(), visibility_timeout=queue_delay(delay))
        logger.info("d365_push_deferred", extra={**log, "delay_seconds": round(delay, 2), "reason": "throttled"})
        return Result("deferred", delay=delay)
    claim = services.state.claim(lead.domain, lead.correlation_id)
    if claim is None:
        delay = services.settings.claim_retry_seconds * (1 + rand())
        services.queues.push.send_message(lead.to_json(), visibility_timeout=queue_delay(delay))
        logger.info("d365_push_deferred", extra={**log, "delay_seconds": round(delay, 2), "reason": "claimed"})
        return Result("deferred", delay=delay)
    try:
        outcome, lead_id = _push(lead, claim, services)
    except D365Error as exc:
        return _failed(lead, claim, exc, services, rand)
    except ConfigError as exc:
        return _give_up(lead, claim, str(exc), services)
    return _synced(lead, claim, outcome, lead_id, services)


def _push(lead: LeadPush, claim: Claim, services: Services) -> tuple[str, str]:
    """Steps 2-4: returns (outcome, lead id).

    Raises:
        D365Error: from any Dataverse call.
    """
    dataverse = services.dataverse
    cid = lead.correlation_id
    known = lead.d365_lead_id or claim.state.d365_lead_id
    lost = False
    if known:
        if _lookup(lambda: dataverse.get_lead(known, cid), lead, "verify"):
            return ALREADY_EXISTS, known
        lost = True
        logger.warning(
            "d365_lead_verification_failed",
            extra={"domain": lead.domain, "d365_lead_id": known, "correlation_id": cid, "status_code": 404},
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


def _lookup(call: Callable[[], str | None], lead: LeadPush, step: str) -> str | None:
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
                "attempt": lead.attempt,
                "correlation_id": lead.correlation_id,
            },
        )
        raise


def _synced(lead: LeadPush, claim: Claim, outcome: str, lead_id: str, services: Services) -> Result:
    now = iso(services.clock())
    url = services.settings.lead_url(lead_id)
    services.state.finish(
        claim,
        status=SYNCED,
        d365_lead_id=lead_id,
        d365_url=url,
        last_synced_at=now,
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
            "correlation_id": lead.correlation_id,
        },
    )
    return Result("retry", delay=seconds, error=str(exc))


def _give_up(lead: LeadPush, claim: Claim, reason: str, services: Services, exc: D365Error | None = None) -> Result:
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
            "error_code": exc.code if exc else "config",
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


def _publish(lead: LeadPush, services: Services, status: str, outcome: str, **extra: Any) -> None:
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


def replay_poison(services: Services, limit: int = 1000) -> dict[str, int]:
    """Move poison messages back to the push queue with a fresh attempt count.

    Messages that are still not valid stay in the poison queue (counted as `invalid`).
    """
    counts = {"replayed": 0, "invalid": 0}
    poison = services.queues.poison
    while counts["replayed"] + counts["invalid"] < limit:
        batch = list(poison.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=120))
        if not batch:
            break
        for message in batch:
            try:
                lead = decode_message(str(message.content).encode("utf-8"))
            except InputError:
                counts["invalid"] += 1
                continue
            fresh = replace(lead, attempt=0, enqueued_at=iso(services.clock()))
            services.queues.push.send_message(fresh.to_json())
            services.state.mark_queued(lead.domain, lead.correlation_id)
            poison.delete_message(message)
            counts["replayed"] += 1
    logger.info("d365_poison_replayed", extra=counts)
    return counts
