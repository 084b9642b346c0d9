"""The deployed shape, scaled down: three host processes — three instances — on one queue, one
table and one simulator, with the settings Bicep gives each instance (maximumInstanceCount 3: its
share of the concurrency and rate budgets, the queue batch size), duplicate deliveries, and one
host killed mid-message. Every domain ends with exactly one lead, on both paths."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_reliability import assert_exactly_once, push_batch

INSTANCES = 3
DEPLOYED = {
    # infra/app/api.bicep with maximumInstanceCount 3 and the default budgets (benchmarks/scale.py).
    "HUNTER_D365_MAX_INSTANCES": str(INSTANCES),
    "HUNTER_D365_CONCURRENCY_BUDGET": "44",
    "HUNTER_D365_RATE_BUDGET_PERCENT": "95",
    "AzureFunctionsJobHost__extensions__queues__batchSize": str(44 // INSTANCES),
    "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "0",
    "PYTHON_THREADPOOL_THREAD_COUNT": "16",
    # Fast retries, and a killed host's messages and claims come back after 8 s: with 3 s (as the
    # one-host kill test has) a loaded machine renewed leases late, other hosts took the messages,
    # and one reached maxDequeueCount (5) and the poison queue.
    "HUNTER_D365_RETRY_BASE_SECONDS": "0.2",
    "HUNTER_D365_RETRY_CAP_SECONDS": "2",
    "HUNTER_D365_RETRY_JITTER_SECONDS": "0.3",
    "HUNTER_D365_MAX_ATTEMPTS": "25",
    "LOCAL_HOST_MESSAGE_LEASE_SECONDS": "8",
    "HUNTER_D365_CLAIM_LEASE_SECONDS": "8",
}


@pytest.mark.parametrize("bulk_size", [pytest.param("1", id="single"), pytest.param("10", id="bulk")])
def test_three_instances_with_duplicates_and_a_killed_host_make_one_lead_per_domain(
    start_stack: Callable[..., Stack], bulk_size: str
) -> None:
    hosts = [start_stack(HUNTER_D365_BULK_SIZE=bulk_size, **DEPLOYED) for _ in range(INSTANCES)]
    first = hosts[0]
    first.admin.configure(latency_ms=600)  # slow Dataverse: the kill lands mid-message
    first.admin.add_fault("*", status=429, retry_after=1, times=3)
    first.admin.add_fault(
        "lead_upsert" if bulk_size == "1" else "lead_create_multiple", drop_after_commit=True, times=3
    )
    domains = [f"scale-{bulk_size}-{i}.example" for i in range(200)]
    push_batch(first, domains)
    # Duplicate deliveries: every domain's single-lead message once more, whichever path pushed it.
    queue = first.queue(first.queue_name)
    for i, domain in enumerate(domains):
        queue.send_message(json.dumps({"schema_version": 1, "domain": domain, "correlation_id": f"dup-{i}"}))
    first.wait_for(lambda: len(first.admin.leads()) >= 1, timeout=60, what="some leads synced")
    hosts[1].kill()
    assert len(first.admin.leads()) < len(domains), "the backlog finished before the kill; nothing was tested"
    assert_exactly_once(first, domains, timeout=180)
    created = sum(len(h.events("d365_lead_created")) for h in (hosts[0], hosts[2]))
    assert created <= len(domains)
