"""Reliability under faults: 429 storms and 5xx flapping during a batch, a host killed mid-batch,
duplicate delivery to several hosts, and fuzzed HTTP and queue input. The default sizes run in the
test command; `make reliability` runs the same tests at the larger `slow` sizes."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
SIZES = [pytest.param(40, id="40"), pytest.param(400, id="400", marks=pytest.mark.slow)]
FAST_RETRIES = {
    "HUNTER_D365_RETRY_BASE_SECONDS": "0.2",
    "HUNTER_D365_RETRY_CAP_SECONDS": "2",
    "HUNTER_D365_RETRY_JITTER_SECONDS": "0.3",
    "HUNTER_D365_MAX_ATTEMPTS": "25",
    # One single-lead message per lead: these tests hold the single path to its guarantees; the
    # bulk path's own versions are in test_bulk_reliability.py.
    "HUNTER_D365_BULK_SIZE": "1",
}


def push_batch(stack: Stack, domains: list[str]) -> None:
    for start in range(0, len(domains), 1000):
        chunk = [{"domain": d} for d in domains[start : start + 1000]]
        body = stack.http.post(f"{stack.url}/api/v1/d365/push-leads", json={"leads": chunk}, timeout=120).json()
        assert body["accepted"] == len(chunk), body


def assert_exactly_once(stack: Stack, domains: list[str], timeout: float) -> None:
    """Every domain ends `synced` with exactly one lead in Dataverse, and nothing else exists."""
    expected = set(domains)

    def all_there() -> bool:
        return {lead["hnt_domain"] for lead in stack.admin.leads()} >= expected

    stack.wait_for(all_there, timeout=timeout, interval=0.5, what=f"{len(domains)} leads")
    stack.wait_for(lambda: stack.queue_length(stack.queue_name) == 0, timeout=timeout, what="an empty queue")
    present = [lead["hnt_domain"] for lead in stack.admin.leads()]
    assert sorted(present) == sorted(expected), "lost or duplicated leads"
    for domain in random.Random(1).sample(domains, min(20, len(domains))):
        assert stack.status(domain)["status"] == "synced"
    assert stack.queue_length(f"{stack.queue_name}-poison") == 0


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("domain_key", ["false", "true"])
def test_429_storm_and_5xx_flapping_during_a_batch(
    start_stack: Callable[..., Stack], size: int, domain_key: str
) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY=domain_key, **FAST_RETRIES)
    write = "lead_upsert" if domain_key == "true" else "lead_create"
    n = max(3, size // 8)
    stack.admin.add_fault("*", status=429, retry_after=1, times=n)
    stack.admin.add_fault(write, status=500, times=n)
    stack.admin.add_fault("lead_get", status=503, times=n)
    stack.admin.add_fault("lead_query", status=503, times=n)
    stack.admin.add_fault(write, drop_after_commit=True, times=n)
    domains = [f"storm-{i}.example" for i in range(size)]
    push_batch(stack, domains)
    assert_exactly_once(stack, domains, timeout=60 + size / 4)
    routes = stack.admin.routes()
    assert sum(by.get("429", 0) for by in routes.values()) >= n  # the storm did happen


@pytest.mark.parametrize("size", SIZES)
def test_host_killed_mid_batch_loses_nothing_and_duplicates_nothing(
    start_stack: Callable[..., Stack], size: int
) -> None:
    settings = {
        "LOCAL_HOST_MESSAGE_LEASE_SECONDS": "3",  # a killed host's messages come back after 3 s
        "HUNTER_D365_CLAIM_LEASE_SECONDS": "3",  # and its claims expire as fast
        **FAST_RETRIES,
    }
    stack = start_stack(**settings)
    stack.admin.configure(latency_ms=120)  # slow Dataverse: the kill lands mid-push
    domains = [f"killed-{i}.example" for i in range(size)]
    push_batch(stack, domains)
    stack.wait_for(lambda: len(stack.admin.leads()) >= size // 4, what="a quarter synced")
    stack.kill()
    assert len(stack.admin.leads()) < size, "the batch finished before the kill; nothing was tested"
    restarted = start_stack(**settings)
    assert_exactly_once(restarted, domains, timeout=60 + size / 2)


def test_duplicate_delivery_to_several_hosts_is_one_lead(start_stack: Callable[..., Stack]) -> None:
    first = start_stack()
    second = start_stack()
    first.admin.configure(latency_ms=80)
    message = json.dumps({"schema_version": 1, "domain": "delivered-twice.example", "correlation_id": "dup-1"})
    queue = first.queue(first.queue_name)
    for _ in range(20):
        queue.send_message(message)
    first.wait_for(lambda: first.queue_length(first.queue_name) == 0, timeout=60, what="an empty queue")
    [lead] = first.admin.leads()
    assert lead["hnt_domain"] == "delivered-twice.example"
    results = [json.loads(m.content) for m in first.queue(first.env["HUNTER_D365_RESULTS_QUEUE"]).peek_messages(32)]
    assert {r["d365_lead_id"] for r in results} == {lead["leadid"]}
    assert len(first.events("d365_lead_created")) + len(second.events("d365_lead_created")) == 1


# -- hostile queue messages (HTTP fuzzing: tests/e2e/test_openapi_conformance.py) ---------------


def test_hostile_queue_messages_each_end_in_poison_once(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    rng = random.Random(7)
    raw = stack.queue(stack.queue_name, encode=False)
    bodies: list[bytes] = [rng.randbytes(rng.randrange(1, 300)) for _ in range(10)] + [
        "é".encode("latin-1") * 10,
        json.dumps({"schema_version": 1, "domain": "x' or hnt_domain ne 'y"}).encode(),
        json.dumps({"schema_version": 1, "domain": "ok.example", "attempt": "zero"}).encode(),
        json.dumps({"schema_version": 1}).encode(),
        json.dumps({"schema_version": "1", "domain": "ok.example"}).encode(),
        b"[" * 40_000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"schema_version": 1, "domain": "ok.example", "company_name": "' + b"n" * 40_000 + b'"}',
        b"null",
        b'"string"',
        b"1e999",
    ]
    for body in bodies:
        raw.send_message(base64.b64encode(body).decode())
    raw.send_message("not base64 at all")
    poison = f"{stack.queue_name}-poison"
    total = len(bodies) + 1
    stack.wait_for(
        lambda: stack.queue_length(poison) == total and stack.queue_length(stack.queue_name) == 0,
        timeout=30,
        what=f"{total} poison messages",
    )
    time.sleep(1.5)  # nothing comes back for another round
    assert stack.queue_length(poison) == total and stack.queue_length(stack.queue_name) == 0
    assert not stack.admin.leads()
    assert not stack.events("host_function_failed")
    assert requests.get(f"{stack.url}/api/healthz/live", timeout=10).ok
