"""One table of scenarios, run on both message shapes (docs/design.md §8): a single-lead message
(`schema_version: 1`) and a bulk message (`schema_version: 2`, the scenario's domain among others).
Each row sets the world up, runs the host loop until the queue is empty, and checks where the
scenario's domain ended: its lead in Dataverse, its state row, its result message, the poison
queue. A rule fixed for one shape is thereby proven for the other."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shared.config import ConfigError
from shared.dataverse import (
    D365APIError,
    D365AuthenticationError,
    D365RateLimitError,
    D365ResponseLostError,
)
from shared.engine import replay_poison
from shared.models import LeadBatch, LeadPush
from tests.unit.fakes import Crash, World, run_host, world

DOMAIN = "acme.example"
OTHERS = ("buddy-1.example", "buddy-2.example")
SHAPES = ["single", "batch"]
# The Dataverse call each step makes, per shape.
CALLS = {
    "single": {"verify": "read_lead", "find": "find_lead", "create": "create_lead"},
    "batch": {"verify": "read_leads", "find": "find_many", "create": "create_many"},
}


def send(w: World, shape: str, *domains: str) -> None:
    """A message as intake sends it: one lead, or every domain in one bulk message."""
    if shape == "single":
        for domain in domains:
            w.queues.push.send_message(LeadPush(domain=domain).to_json())
    else:
        w.queues.push.send_message(LeadBatch(tuple(LeadPush(domain=d) for d in domains)).to_json())


def domains_for(shape: str) -> tuple[str, ...]:
    return (DOMAIN,) if shape == "single" else (DOMAIN, *OTHERS)


def leads_of(w: World, domain: str) -> list[str]:
    return [lead_id for lead_id, record in w.dataverse.leads.items() if record.get("hnt_domain") == domain]


def poisoned(w: World, domain: str) -> int:
    """How many poison messages hold `domain` (either shape)."""
    count = 0
    for text in w.queues.poison.texts():
        data = json.loads(text)
        leads = data.get("leads", [data])
        count += sum(1 for lead in leads if lead.get("domain") == domain)
    return count


def results_of(w: World, domain: str) -> list[tuple[str, str]]:
    return [(r["status"], r["outcome"]) for r in map(json.loads, w.queues.results.texts()) if r["domain"] == domain]


def synced_row(w: World, lead_id: str) -> None:
    w.table.create_entity(
        {"PartitionKey": DOMAIN, "RowKey": "lead", "status": "synced", "d365_lead_id": lead_id, "attempts": 1}
    )


@dataclass
class Scenario:
    """How to set the world up, and where the domain must end."""

    setup: Callable[[World, str], None]
    status: str  # the state row's status at the end
    outcome: str  # the last result published for the domain
    leads: int = 1  # leads of the domain in Dataverse at the end
    poison: int = 0  # poison messages holding the domain
    settings: dict[str, str] = field(default_factory=dict)
    max_creates: int | None = None  # the whole call ends at once: no split


def fail(step: str, *errors: Exception | type[Exception]) -> Callable[[World, str], None]:
    def setup(w: World, shape: str) -> None:
        w.dataverse.fail[CALLS[shape][step]] = list(errors)

    return setup


def nothing(w: World, shape: str) -> None:
    """No fault: the happy path."""


def existing(w: World, shape: str) -> None:
    w.dataverse.add(hnt_domain=DOMAIN)


def stored_id_gone(w: World, shape: str) -> None:
    synced_row(w, "6f9619ff-8b86-d011-b42d-00c04fc964ff")


def key_taken_after_lookup(w: World, shape: str) -> None:
    """The lead appears between the lookup and the create: the create answers 412."""
    w.dataverse.add(hnt_domain=DOMAIN)
    if shape == "batch":
        real = w.dataverse.find_many
        misses = [1]

        def find_many(column: str, values: list[str], correlation_id: str | None = None) -> dict[str, str]:
            if misses:
                misses.pop()
                return {}
            return real(column, values, correlation_id)

        w.dataverse.find_many = find_many  # type: ignore[method-assign]


def answer_lost(w: World, shape: str) -> None:
    w.dataverse.after_commit = [D365ResponseLostError("the connection was lost", "connection_dropped")]


def crash_mid_call(w: World, shape: str) -> None:
    w.dataverse.after_commit = [Crash()]


def claim_taken_during_the_call(w: World, shape: str) -> None:
    """The call outlasts the lease (a stalled process) and a rival push claims the domain meanwhile."""
    create = CALLS[shape]["create"]

    def on_call(method: str) -> None:
        if method == create and w.dataverse.on_call is not None:
            w.dataverse.on_call = None
            w.clock.advance(w.services.settings.claim_lease_seconds + 1)
            assert w.services.state.claim(DOMAIN, "rival") is not None
            w.queues.push.send_message(LeadPush(domain=DOMAIN, correlation_id="rival").to_json())

    w.dataverse.on_call = on_call


def refuse_the_record(w: World, shape: str) -> None:
    w.dataverse.refuse = {DOMAIN}
    w.dataverse.fail["create_lead"] = [D365APIError("A validation error occurred.", 400, "0x80044331")]


RATE_LIMITED = D365RateLimitError("Number of requests exceeded the limit of 6000", 7.0, code="0x80072322")
UNAVAILABLE = D365APIError("Service unavailable", 503, "0x0", transient=True)
UNAUTHORIZED = D365AuthenticationError("authentication failed: the token was refused twice", 401, "")
FORBIDDEN = D365APIError("Principal user is missing prvCreateLead privilege", 403, "0x80040220")

SCENARIOS: dict[str, Scenario] = {
    "created": Scenario(nothing, "synced", "created"),
    "adopted": Scenario(existing, "synced", "already_exists"),
    "verify_404_recreated": Scenario(stored_id_gone, "synced", "recreated"),
    "412_adopted": Scenario(
        key_taken_after_lookup, "synced", "already_exists", settings={"HUNTER_D365_DOMAIN_KEY": "true"}
    ),
    "429_uses_no_attempt": Scenario(
        fail("create", RATE_LIMITED, RATE_LIMITED, RATE_LIMITED),
        "synced",
        "created",
        settings={"HUNTER_D365_MAX_ATTEMPTS": "1"},
    ),
    "429_bounded": Scenario(
        fail("create", *[RATE_LIMITED] * 40),
        "error",
        "failed",
        leads=0,
        poison=1,
        settings={"HUNTER_D365_MAX_THROTTLED_SECONDS": "20"},
    ),
    "5xx_retried": Scenario(fail("create", UNAVAILABLE), "synced", "created"),
    "5xx_exhausted": Scenario(fail("create", *[UNAVAILABLE] * 10), "error", "failed", leads=0, poison=1),
    "401": Scenario(fail("create", UNAUTHORIZED), "error", "failed", leads=0, poison=1, max_creates=1),
    "403": Scenario(fail("create", FORBIDDEN), "error", "failed", leads=0, poison=1, max_creates=1),
    "config": Scenario(
        fail("find", ConfigError("HUNTER_D365_CLIENT_SECRET: missing")), "error", "failed", leads=0, poison=1
    ),
    "lost_response": Scenario(answer_lost, "synced", "already_exists"),
    "crash_mid_call": Scenario(crash_mid_call, "synced", "already_exists"),
    "claim_lost": Scenario(claim_taken_during_the_call, "synced", "already_exists"),
    "poison_record_refused": Scenario(refuse_the_record, "error", "failed", leads=0, poison=1),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str, shape: str) -> None:
    scenario = SCENARIOS[name]
    w = world(**scenario.settings)
    scenario.setup(w, shape)
    send(w, shape, *domains_for(shape))
    run_host(w)
    assert len(leads_of(w, DOMAIN)) == scenario.leads
    row = w.state(DOMAIN)
    assert row is not None and row["status"] == scenario.status and not row["claim_token"]
    if scenario.leads:
        assert row["d365_lead_id"] == leads_of(w, DOMAIN)[0]
    assert poisoned(w, DOMAIN) == scenario.poison
    published = results_of(w, DOMAIN)
    assert published and published[-1] == (scenario.status, scenario.outcome)
    if name == "claim_lost":
        # Only the rival, which holds the claim at the end, published; the loser never said `synced`.
        assert len(published) == 1
    for other in domains_for(shape)[1:]:  # the others of a bulk message end as the scenario allows
        assert len(leads_of(w, other)) + poisoned(w, other) == 1
    if scenario.max_creates is not None:
        assert sum(1 for method, _ in w.dataverse.calls if method == CALLS[shape]["create"]) <= scenario.max_creates


@pytest.mark.parametrize("shape", SHAPES)
def test_scenario_replay_after_the_cause_is_fixed(shape: str) -> None:
    w = world()
    w.dataverse.fail[CALLS[shape]["create"]] = [UNAUTHORIZED]
    send(w, shape, *domains_for(shape))
    run_host(w)
    assert all(poisoned(w, domain) == 1 for domain in domains_for(shape))
    [message] = w.queues.poison.texts()
    assert json.loads(message)["schema_version"] == (1 if shape == "single" else 2)
    assert replay_poison(w.services) == {"replayed": 1, "invalid": 0}
    run_host(w)
    for domain in domains_for(shape):
        assert len(leads_of(w, domain)) == 1
        row = w.state(domain)
        assert row is not None and row["status"] == "synced"
    assert not w.queues.poison.texts()


def test_a_schema_2_message_the_host_poisoned_is_replayed() -> None:
    """Finding 2: the host poisoned a bulk message (base64, as it copies it) whose domains it had
    claimed; replay reads it, and every domain ends synced."""
    w = world()
    domains = [f"replayed-{i}.example" for i in range(3)]
    for domain in domains:
        assert w.services.state.claim(domain, "crashed-worker") is not None
    body = LeadBatch(tuple(LeadPush(domain=d) for d in domains), failed_deliveries=4).to_json()
    w.queues.poison.send_message(base64.b64encode(body.encode()).decode())
    assert replay_poison(w.services) == {"replayed": 1, "invalid": 0}
    [fresh] = [json.loads(text) for text in w.queues.push.texts()]
    assert fresh["schema_version"] == 2 and fresh["failed_deliveries"] == 0
    run_host(w)
    for domain in domains:
        assert len(leads_of(w, domain)) == 1
        assert (w.state(domain) or {}).get("status") == "synced"
