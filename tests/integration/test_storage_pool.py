"""Storage's connection pools are sized to the threads that use them (shared/storage.py): a host
worker's invocations and their fan-out threads reuse kept connections instead of opening and
discarding them ("Connection pool is full, discarding connection"), and every round trip is
counted for the benchmarks."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import engine, storage
from shared.config import Settings
from shared.storage import THREADS_PER_INVOCATION, Queues, pool_size, round_trips, state_table
from tests.conftest import Azurite

BASE = {
    "HUNTER_D365_BASE_URL": "https://org.example.crm.dynamics.com",
    "HUNTER_D365_TENANT_ID": "t",
    "HUNTER_D365_CLIENT_ID": "c",
    "HUNTER_D365_CLIENT_SECRET": "s",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
}


def settings(azurite: Azurite, names: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({**BASE, "AzureWebJobsStorage": azurite.connection_string, **names, **extra})


def test_the_pool_holds_every_thread_that_may_call_storage() -> None:
    assert THREADS_PER_INVOCATION == engine.STORAGE_CONCURRENCY
    workers = Settings.from_env({**BASE, "PYTHON_THREADPOOL_THREAD_COUNT": "16"})
    assert pool_size(workers) == 16 * 17


def test_many_threads_on_one_table_and_queue_discard_no_connection(
    azurite: Azurite, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """As many threads as one worker thread's invocation fans out to, times a few invocations: each
    connection goes back to the pool (Azurite's loopback, the SDKs' transport)."""
    chosen = settings(azurite, names, PYTHON_THREADPOOL_THREAD_COUNT="4")
    table, queues = state_table(chosen), Queues(chosen)
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    threads = 4 * THREADS_PER_INVOCATION
    before = round_trips()

    def work(i: int) -> None:
        table.create_entity({"PartitionKey": "p", "RowKey": f"r{i}", "n": i})
        queues.push.send_message(f"m{i}")

    for _ in range(3):
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(work, range(_ * threads, (_ + 1) * threads)))
    assert not [r for r in caplog.records if "discarding connection" in r.getMessage()]
    # 2 calls per item, plus creating the table and the queue once each.
    assert round_trips() - before >= 3 * threads * 2
    assert storage.round_trips() == round_trips()
