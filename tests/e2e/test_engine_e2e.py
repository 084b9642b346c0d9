"""The engine's scenario table end to end (docs/design.md §8): the same rows as
`tests/unit/test_engine_scenarios.py`, on the local host + Azurite + the simulator, parametrized over
both message shapes. Three domains go through push-leads: with `HUNTER_D365_BULK_SIZE=1` as three
single-lead messages (schema 1), with 10 as one bulk message (schema 2). Faults are the simulator's,
on the route each shape writes through; every row asserts where each domain ended — its lead in
the simulator, its state, the poison queue."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient, UpdateMode

from tests.e2e.conftest import Stack

DOMAINS = ["engine-a.example", "engine-b.example", "engine-c.example"]
SHAPES = {"single": "1", "batch": "10"}
CREATE = {"single": "lead_create", "batch": "lead_create_multiple"}
FAST = {
    "HUNTER_D365_RETRY_BASE_SECONDS": "0.2",
    "HUNTER_D365_RETRY_CAP_SECONDS": "1",
    "HUNTER_D365_RETRY_JITTER_SECONDS": "0.2",
    "HUNTER_D365_MAX_ATTEMPTS": "3",
}


def push(stack: Stack, force: bool = False) -> None:
    response = stack.push_batch([{"domain": d, "force": force} for d in DOMAINS])
    assert response.status_code == 202, response.text


def settle(stack: Stack, *statuses: str, timeout: float = 40) -> None:
    """Every domain in one of `statuses` and the push queue empty."""
    for domain in DOMAINS:
        stack.wait_status(domain, *statuses, timeout=timeout)
    stack.wait_for(lambda: stack.queue_length(stack.queue_name) == 0, timeout=timeout, what="an empty queue")


def leads_of(stack: Stack, domain: str) -> int:
    return sum(1 for lead in stack.admin.leads() if lead.get("hnt_domain") == domain)


def poisoned(stack: Stack) -> dict[str, int]:
    """Poison messages per domain (either shape, as the worker or the host left them)."""
    counts: dict[str, int] = {}
    for raw in stack.peek(f"{stack.queue_name}-poison"):
        data = json.loads(base64.b64decode(raw).decode())
        for lead in data.get("leads", [data]):
            counts[lead["domain"]] = counts.get(lead["domain"], 0) + 1
    return counts


def wipe_state(stack: Stack) -> None:
    """Forget the state rows (a lead then exists in Dataverse that the app does not know of)."""
    table = TableServiceClient.from_connection_string(stack.azurite.connection_string).get_table_client(
        stack.env["HUNTER_D365_STATE_TABLE"]
    )
    for domain in DOMAINS:
        table.delete_entity(domain, "lead")


@dataclass
class Row:
    """A scenario: settings, what to do before and after the push, and where each domain ends."""

    status: str
    outcome: str
    leads: int = 1
    poison: int = 0
    settings: dict[str, str] = field(default_factory=dict)
    before: Callable[[Stack, str], None] | None = None  # after the stack starts, before the push
    first: bool = False  # push once and settle before the scenario's push (a lead already exists)
    between: Callable[[Stack, str], None] | None = None  # after the first push settles
    force: bool = False  # the scenario's push says `force` (verify now, never skip at intake)
    max_creates: int | None = None


def fault(**kwargs: object) -> Callable[[Stack, str], None]:
    def arm(stack: Stack, shape: str) -> None:
        stack.admin.add_fault(CREATE[shape], **kwargs)  # type: ignore[arg-type]

    return arm


def forget_state(stack: Stack, shape: str) -> None:
    wipe_state(stack)


def delete_leads(stack: Stack, shape: str) -> None:
    for lead in stack.admin.leads():
        stack.admin.delete_lead(lead["leadid"])


ROWS: dict[str, Row] = {
    "created": Row("synced", "created"),
    "adopted": Row("synced", "already_exists", first=True, between=forget_state),
    "verify_404_recreated": Row("synced", "recreated", first=True, between=delete_leads, force=True),
    "412_adopted": Row(
        "synced", "already_exists", first=True, between=forget_state, settings={"HUNTER_D365_DOMAIN_KEY": "true"}
    ),
    "429_uses_no_attempt": Row(
        "synced",
        "created",
        before=fault(status=429, retry_after=1, times=2),
        settings={"HUNTER_D365_MAX_ATTEMPTS": "1"},
    ),
    "429_bounded": Row(
        "error",
        "failed",
        leads=0,
        poison=1,
        before=fault(status=429, retry_after=1, times=-1),
        settings={"HUNTER_D365_MAX_THROTTLED_SECONDS": "3"},
    ),
    "5xx_retried": Row("synced", "created", before=fault(status=503, times=1)),
    "5xx_exhausted": Row("error", "failed", leads=0, poison=1, before=fault(status=500, times=-1)),
    "401": Row("error", "failed", leads=0, poison=1, before=fault(status=401, times=-1), max_creates=2),
    "403": Row(
        "error", "failed", leads=0, poison=1, before=fault(status=403, code="0x80040220", times=-1), max_creates=1
    ),
    "lost_response": Row("synced", "already_exists", before=fault(drop_after_commit=True, times=3)),
    "record_refused": Row("error", "failed", leads=0, poison=1, before=fault(status=400, code="0x80044331", times=-1)),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("name", list(ROWS))
def test_engine_scenario(start_stack: Callable[..., Stack], name: str, shape: str) -> None:
    row = ROWS[name]
    stack = start_stack(HUNTER_D365_BULK_SIZE=SHAPES[shape], **{**FAST, **row.settings})
    if row.first:
        push(stack)
        settle(stack, "synced")
        if row.between is not None:
            row.between(stack, shape)
    if row.before is not None:
        row.before(stack, shape)
    push(stack, row.force)
    settle(stack, row.status)
    for domain in DOMAINS:
        state = stack.status(domain)
        assert (state["status"], state["last_outcome"]) == (row.status, row.outcome), domain
        assert leads_of(stack, domain) == row.leads, domain
    if row.status == "synced":
        # a lead lost after the first push (the 404 row) is gone: only the live ones count
        assert {stack.status(d)["d365_lead_id"] for d in DOMAINS} == {lead["leadid"] for lead in stack.admin.leads()}
    assert poisoned(stack) == {domain: row.poison for domain in DOMAINS if row.poison}
    if row.max_creates is not None and shape == "batch":
        creates = stack.admin.routes().get(CREATE[shape], {})
        assert sum(creates.values()) <= row.max_creates  # the whole message in one call (+ a token renewal)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_engine_poison_then_replay(start_stack: Callable[..., Stack], shape: str) -> None:
    stack = start_stack(HUNTER_D365_BULK_SIZE=SHAPES[shape], **FAST)
    stack.admin.add_fault(CREATE[shape], status=403, code="0x80040220", times=-1)
    push(stack)
    settle(stack, "error")
    versions = {json.loads(base64.b64decode(raw))["schema_version"] for raw in stack.peek(f"{stack.queue_name}-poison")}
    assert versions == {1 if shape == "single" else 2}
    stack.admin.clear_faults()  # the operator grants the privilege
    replayed = stack.replay().json()
    assert replayed == {"replayed": 3 if shape == "single" else 1, "invalid": 0}
    settle(stack, "synced")
    assert sorted(lead["hnt_domain"] for lead in stack.admin.leads()) == DOMAINS
    assert stack.queue_length(f"{stack.queue_name}-poison") == 0


@pytest.mark.parametrize("shape", list(SHAPES))
def test_engine_crash_mid_call(start_stack: Callable[..., Stack], shape: str) -> None:
    """The host dies while its create is in flight (the simulator commits it): after a restart
    every domain has exactly one lead."""
    settings = {
        "HUNTER_D365_BULK_SIZE": SHAPES[shape],
        "LOCAL_HOST_MESSAGE_LEASE_SECONDS": "3",
        "HUNTER_D365_CLAIM_LEASE_SECONDS": "3",
        **FAST,
    }
    stack = start_stack(**settings)
    stack.admin.add_fault(CREATE[shape], latency_ms=1500, times=3)
    push(stack)
    stack.wait_for(lambda: stack.admin.routes().get(CREATE[shape]), what="a create in flight")
    stack.kill()
    restarted = start_stack(**settings)
    settle(restarted, "synced", timeout=60)
    assert sorted(lead["hnt_domain"] for lead in restarted.admin.leads()) == DOMAINS


@pytest.mark.parametrize("shape", list(SHAPES))
def test_engine_claim_lost_publishes_nothing(start_stack: Callable[..., Stack], shape: str) -> None:
    """While the worker's create is in flight, its claims are taken over (a rival writes the rows);
    the worker records nothing and publishes nothing for them. A later push adopts the leads."""
    stack = start_stack(HUNTER_D365_BULK_SIZE=SHAPES[shape], **FAST)
    stack.admin.add_fault(CREATE[shape], latency_ms=5000, times=3)  # long enough to see every claim
    table = TableServiceClient.from_connection_string(stack.azurite.connection_string).get_table_client(
        stack.env["HUNTER_D365_STATE_TABLE"]
    )
    push(stack)
    stack.wait_for(lambda: all(stack.status(d)["status"] == "syncing" for d in DOMAINS), what="claims")
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
    for domain in DOMAINS:  # the rival's claims, for three seconds
        entity = table.get_entity(domain, "lead")
        entity.update(claim_token="rival", claimed_until=soon, correlation_id="rival")
        table.update_entity(entity, mode=UpdateMode.REPLACE)
    stack.wait_for(lambda: len(stack.events("d365_claim_lost")) >= len(DOMAINS), what="claims lost")
    results = stack.env["HUNTER_D365_RESULTS_QUEUE"]
    assert stack.queue_length(results) == 0  # the loser told Hunter nothing
    push(stack)  # the rival's push, once its claims have expired
    settle(stack, "synced")
    for domain in DOMAINS:
        assert leads_of(stack, domain) == 1
        assert stack.status(domain)["last_outcome"] == "already_exists"


def test_a_bulk_message_the_host_poisoned_is_replayed(start_stack: Callable[..., Stack]) -> None:
    """Issue 19, finding 2, end to end: a schema-2 message in the poison queue as the host leaves
    it (base64, counters as they were, its domains still `syncing` under an expired claim) is
    replayed, and every domain ends synced with one lead."""
    stack = start_stack(HUNTER_D365_BULK_SIZE="10", **FAST)
    table = TableServiceClient.from_connection_string(stack.azurite.connection_string).get_table_client(
        stack.env["HUNTER_D365_STATE_TABLE"]
    )
    with contextlib.suppress(ResourceExistsError):
        table.create_table()
    expired = (datetime.now(UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    for domain in DOMAINS:
        table.upsert_entity(
            {
                "PartitionKey": domain,
                "RowKey": "lead",
                "status": "syncing",
                "claim_token": "dead",
                "claimed_until": expired,
            }
        )
    message = {"schema_version": 2, "failed_deliveries": 4, "attempt": 2, "leads": [{"domain": d} for d in DOMAINS]}
    stack.queue(f"{stack.queue_name}-poison").send_message(json.dumps(message))  # base64, as the host copies it
    assert stack.replay().json() == {"replayed": 1, "invalid": 0}
    settle(stack, "synced")
    assert sorted(lead["hnt_domain"] for lead in stack.admin.leads()) == DOMAINS
    assert stack.queue_length(f"{stack.queue_name}-poison") == 0
