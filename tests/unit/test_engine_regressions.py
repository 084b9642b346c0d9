"""Regression tests for the findings of issue 19 (one push engine), on the in-memory fakes: each
test fails on the code before the engine and passes on it. They assert where leads end (Dataverse,
the state table, the queues), not the order of calls."""

from __future__ import annotations

import json
import re
from pathlib import Path

from azure.core.exceptions import ServiceRequestError

from shared.dataverse import D365APIError, D365AuthenticationError
from shared.engine import MAX_FAILED_DELIVERIES, BatchResult, process_message
from shared.models import LeadBatch, LeadPush
from shared.retry import RetryPolicy
from tests.unit.fakes import World, run_host, world

ROOT = Path(__file__).resolve().parents[2]


def batch(*domains: str) -> str:
    return LeadBatch(tuple(LeadPush(domain=d) for d in domains)).to_json()


def leads_by_domain(w: World) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for lead_id, record in w.dataverse.leads.items():
        found.setdefault(str(record.get("hnt_domain")), []).append(lead_id)
    return found


def creates(w: World) -> int:
    return sum(1 for method, _ in w.dataverse.calls if method == "create_many")


def test_a_split_that_outlasts_a_short_lease_keeps_its_claims_against_a_competing_push() -> None:
    """Finding 1: without the alternate key, a refused CreateMultiple is split call by call; each
    call takes 4 s against a 10 s lease. A competing single push of a domain still waiting in the
    split must not create it too: the split renews its claims, the competitor waits, adopts."""
    w = world(HUNTER_D365_CLAIM_LEASE_SECONDS="10", HUNTER_D365_DOMAIN_KEY="false")
    w.dataverse.unique_key = False  # no alternate key: nothing in Dataverse refuses a duplicate
    domains = [f"split-{i}.example" for i in range(8)]
    w.dataverse.refuse = {"split-0.example"}
    contested = "split-7.example"
    competitor: list[object] = []

    def slow(method: str) -> None:
        if method != "create_many":
            return
        w.clock.advance(4)
        if creates(w) == 4 and not competitor:  # the split is well past one lease by now
            body = LeadPush(domain=contested, correlation_id="competitor").to_json().encode()
            competitor.append(process_message(body, w.services, lambda: 0.0))

    w.dataverse.on_call = slow
    w.queues.push.send_message(batch(*domains))
    run_host(w)
    assert competitor and getattr(competitor[0], "action", None) == "deferred"
    found = leads_by_domain(w)
    assert {domain: len(found.get(domain, [])) for domain in domains[1:]} == dict.fromkeys(domains[1:], 1)
    row = w.state(contested)
    assert row is not None and row["d365_lead_id"] == found[contested][0]
    # What Hunter was told matches the state table, whichever push told it.
    told = {json.loads(t)["d365_lead_id"] for t in w.queues.results.texts() if json.loads(t)["domain"] == contested}
    assert told == {found[contested][0]}


def test_401_and_403_on_create_multiple_end_the_whole_message_in_one_call() -> None:
    """Finding 3: 32 leads refused for the caller (not for a record) cost one call, not 63."""
    for error in (
        D365AuthenticationError("authentication failed: the token was refused twice", 401, ""),
        D365APIError("Principal user is missing prvCreateLead privilege", 403, "0x80040220"),
    ):
        w = world()
        domains = [f"all-{i}.example" for i in range(32)]
        w.dataverse.fail["create_many"] = [error] * 100
        w.queues.push.send_message(batch(*domains))
        run_host(w)
        assert creates(w) == 1
        [poison] = [json.loads(text) for text in w.queues.poison.texts()]
        assert sorted(lead["domain"] for lead in poison["leads"]) == sorted(domains)
        assert {(w.state(d) or {}).get("status") for d in domains} == {"error"}
        assert {json.loads(t)["status"] for t in w.queues.results.texts()} == {"error"}


def test_a_retry_sends_only_the_leads_left() -> None:
    """Finding: a bulk message whose first leads were created and whose next call failed retries
    the rest only."""
    w = world()
    domains = [f"left-{i}.example" for i in range(100)]
    refused = D365APIError("A validation error occurred.", 400, "0x80044331")
    unavailable = D365APIError("Service unavailable", 503, "0x0", transient=True)
    real = w.dataverse.create_many
    # 100 refused → 50 created, 50 refused → 25 created, 25: the service goes down.
    answers = iter(["refuse", "ok", "refuse", "ok", "down"])

    def create_many(payloads: list[dict[str, object]], correlation_id: str | None = None) -> list[str]:
        answer = next(answers, "ok")
        if answer == "refuse":
            w.dataverse.calls.append(("create_many", ""))
            raise refused
        if answer == "down":
            w.dataverse.calls.append(("create_many", ""))
            raise unavailable
        return real(payloads, correlation_id)

    w.dataverse.create_many = create_many  # type: ignore[method-assign]
    w.queues.push.send_message(batch(*domains))
    first = w.queues.push.messages[0]
    result = process_message(str(first.content).encode(), w.services, lambda: 0.0)
    w.queues.push.delete_message(first)
    assert isinstance(result, BatchResult)
    assert [r.action for r in result.results.values()].count("done") == 75
    [retry] = [json.loads(text) for text in w.queues.push.texts()]
    assert len(retry["leads"]) == 25 and retry["attempt"] == 1
    run_host(w)
    assert {d: len(ids) for d, ids in leads_by_domain(w).items()} == dict.fromkeys(domains, 1)


def test_the_app_ends_a_crashing_message_before_the_host_poisons_it() -> None:
    """Finding 2: the app's failed-delivery limit sits below host.json's maxDequeueCount, so a bulk
    message whose deliveries keep failing is split by the app (each lead goes on alone) instead of
    being poisoned whole by the host."""
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] > MAX_FAILED_DELIVERIES
    docs = (ROOT / "docs" / "design.md").read_text()
    assert re.search(rf"\b{MAX_FAILED_DELIVERIES}\b.*maxDequeueCount", docs)
    w = world()
    domains = [f"crashy-{i}.example" for i in range(3)]
    # Storage fails for the first four deliveries: each ends without an answer.
    w.table.fail["get_entity"] = [ServiceRequestError("table down") for _ in range(4)]
    w.queues.push.send_message(batch(*domains))
    outcomes = run_host(w)
    assert "host_poison" not in outcomes
    assert {d: len(ids) for d, ids in leads_by_domain(w).items()} == dict.fromkeys(domains, 1)


def test_decide_honours_retry_after_without_an_attempt_and_bounds_throttled_time() -> None:
    policy = RetryPolicy(base_seconds=60, cap_seconds=3600, jitter_seconds=0, max_attempts=3, max_throttled_seconds=100)
    limited = D365APIError("busy", 429, transient=True)
    limited.retry_after = 61.0  # type: ignore[attr-defined]  # just above the first backoff
    decision = policy.decide(limited, attempt=2, throttled_seconds=99)  # the last attempt
    assert (decision.action, decision.delay, decision.uses_attempt) == ("retry", 61.0, False)
    assert policy.decide(limited, attempt=0, throttled_seconds=100).reason == "throttled_too_long"
    down = D365APIError("down", 503, transient=True)
    assert (policy.decide(down, 0).delay, policy.decide(down, 0).uses_attempt) == (60.0, True)
    assert policy.decide(down, 2).reason == "attempts_exhausted"
    assert policy.decide(D365APIError("bad", 400), 0).reason == "permanent"
