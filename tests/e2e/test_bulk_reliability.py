"""The bulk path (version-2 messages, one lookup and one CreateMultiple each) on the real local
stack, under the reliability suite's faults: a 429 storm with 5xx flapping and responses lost after
the commit, a host killed mid-batch, the same bulk message delivered many times to two hosts, and
a bad lead inside a bulk message. Exactly one lead per domain every time."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_reliability import FAST_RETRIES, SIZES, assert_exactly_once, push_batch

BULK = {**FAST_RETRIES, "HUNTER_D365_BULK_SIZE": "10"}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("domain_key", ["false", "true"])
def test_bulk_429_storm_5xx_and_lost_responses(start_stack: Callable[..., Stack], size: int, domain_key: str) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY=domain_key, **BULK)
    n = max(2, size // 40)
    # On the Dataverse routes the bulk path uses ("*" would also refuse the managed-identity tokens
    # the app's storage client asks the simulator for).
    stack.admin.add_fault("lead_create_multiple", status=429, retry_after=1, times=n)
    stack.admin.add_fault("lead_query", status=429, retry_after=1, times=n)
    stack.admin.add_fault("lead_create_multiple", status=500, times=n)
    stack.admin.add_fault("lead_query", status=503, times=n)
    stack.admin.add_fault("lead_create_multiple", drop_after_commit=True, times=n)
    domains = [f"bulk-storm-{i}.example" for i in range(size)]
    push_batch(stack, domains)
    assert_exactly_once(stack, domains, timeout=60 + size / 4)
    routes = stack.admin.routes()
    assert sum(by.get("429", 0) for by in routes.values()) >= 2 * n  # the storm did happen
    assert routes["lead_create_multiple"].get("0", 0) == n  # committed, then the response was lost
    assert "lead_create" not in routes and "lead_upsert" not in routes  # every create was a CreateMultiple


@pytest.mark.parametrize("size", SIZES)
def test_bulk_host_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    start_stack: Callable[..., Stack], size: int
) -> None:
    settings = {
        "LOCAL_HOST_MESSAGE_LEASE_SECONDS": "3",
        "HUNTER_D365_CLAIM_LEASE_SECONDS": "3",
        **BULK,
        "HUNTER_D365_BULK_SIZE": "4",
    }
    stack = start_stack(**settings)
    stack.admin.configure(latency_ms=300)  # slow Dataverse: the kill lands between calls
    domains = [f"bulk-killed-{i}.example" for i in range(size)]
    push_batch(stack, domains)
    stack.wait_for(lambda: len(stack.admin.leads()) >= 4, what="a first CreateMultiple")
    stack.kill()
    assert len(stack.admin.leads()) < size, "the batch finished before the kill; nothing was tested"
    restarted = start_stack(**settings)
    assert_exactly_once(restarted, domains, timeout=60 + size / 2)


def test_bulk_message_delivered_many_times_to_two_hosts_is_one_lead_each(start_stack: Callable[..., Stack]) -> None:
    first = start_stack(**BULK)
    second = start_stack(**BULK)
    first.admin.configure(latency_ms=80)
    domains = [f"bulk-twice-{i}.example" for i in range(5)]
    message = json.dumps({"schema_version": 2, "correlation_id": "bulk-dup", "leads": [{"domain": d} for d in domains]})
    queue = first.queue(first.queue_name)
    for _ in range(10):
        queue.send_message(message)
    first.wait_for(lambda: first.queue_length(first.queue_name) == 0, timeout=60, what="an empty queue")
    assert sorted(lead["hnt_domain"] for lead in first.admin.leads()) == sorted(domains)
    created = first.events("d365_lead_created") + second.events("d365_lead_created")
    assert sorted(event["domain"] for event in created) == sorted(domains)


def test_a_bad_lead_in_a_bulk_message_ends_alone_in_poison(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(**BULK)
    leads: list[object] = [{"domain": f"bulk-good-{i}.example"} for i in range(6)]
    leads.insert(3, {"domain": "bulk-bad.example", "priority": "high"})
    stack.queue(stack.queue_name).send_message(json.dumps({"schema_version": 2, "leads": leads}))
    poison = f"{stack.queue_name}-poison"
    stack.wait_for(lambda: len(stack.admin.leads()) == 6 and stack.queue_length(poison) == 1, what="6 leads, 1 poison")
    [bad] = [json.loads(m.content) for m in stack.queue(poison, encode=True).peek_messages(5)]
    assert bad == {"domain": "bulk-bad.example", "priority": "high"}
