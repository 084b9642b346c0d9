"""The seed's loop closed: the button (HTTP push) → the worker → Dataverse → the results queue →
Hunter's results consumer (its loop running in the background, by managed identity as in Azure) →
Hunter's `companies` row in a real PostgreSQL, checked with the seed's own SQL:

    SELECT d365_lead_id, d365_sync_status, d365_sync_last_at FROM companies WHERE domain = '<domain>';

C.1 create, C.2 idempotent re-push, C.3 an id in Hunter's database that Dynamics does not have
(set with the seed's own UPDATE), and D.3 a persistent 500 (`d365_sync_status = error`,
`d365_sync_error` filled)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from devstack.hunter_db import SEED_ORPHAN_ID, add_company, company, orphan, seed_select
from hunter_results import Consumer, ConsumerSettings
from tests.e2e.conftest import Stack

GUID = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
Row = tuple[str | None, str, datetime | None]


class Hunter:
    """Hunter's side: its database and its results consumer, looping in a thread."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack = stack
        self.url = url
        env = {**stack.env, "HUNTER_RESULTS_DATABASE_URL": url}
        env |= {"HUNTER_RESULTS_POLL_MIN_SECONDS": "0.05", "HUNTER_RESULTS_POLL_MAX_SECONDS": "0.2"}
        self.consumer = Consumer(ConsumerSettings.from_env(env))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.consumer.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def row(self, domain: str) -> Row | None:
        """The seed's SELECT."""
        return seed_select(self.url, domain)

    def wait_row(self, domain: str, check: Callable[[Row], bool], what: str, timeout: float = 40) -> Row:
        row: Row = self.stack.wait_for(
            lambda: (r := self.row(domain)) is not None and check(r) and r, timeout=timeout, what=what
        )
        return row

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture
def hunter(
    start_stack: Callable[..., Stack], hunter_db: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Hunter]]:
    """`hunter(**settings)` starts a host with those settings and Hunter's consumer beside it."""
    started: list[Hunter] = []

    def start(**settings: str) -> Hunter:
        stack = start_stack(**settings)
        # The consumer's storage identity: the simulated managed-identity endpoint the host uses.
        monkeypatch.setenv("IDENTITY_ENDPOINT", stack.env["IDENTITY_ENDPOINT"])
        monkeypatch.setenv("IDENTITY_HEADER", stack.env["IDENTITY_HEADER"])
        started.append(Hunter(stack, hunter_db))
        return started[-1]

    yield start
    for each in started:
        each.close()


def test_c1_create_fills_hunters_row(hunter: Callable[..., Hunter]) -> None:
    h = hunter()
    add_company(h.url, "seed-c1.example")
    assert h.row("seed-c1.example") == (None, "not_synced", None)
    assert h.stack.push({"domain": "seed-c1.example", "company_name": "Seed C1"}).status_code == 202
    lead_id, status, last_at = h.wait_row("seed-c1.example", lambda r: r[1] == "synced", "C.1 synced")
    # Expected: d365_lead_id filled (GUID), d365_sync_status = 'synced', d365_sync_last_at set.
    assert lead_id is not None and GUID.match(lead_id) and status == "synced" and last_at is not None
    [lead] = h.stack.admin.leads()
    assert lead["leadid"] == lead_id
    assert lead_id == h.stack.status("seed-c1.example")["d365_lead_id"]


def test_c2_repush_keeps_hunters_id(hunter: Callable[..., Hunter]) -> None:
    h = hunter()
    add_company(h.url, "seed-c2.example")
    h.stack.push({"domain": "seed-c2.example", "company_name": "Seed C2"})
    first = h.wait_row("seed-c2.example", lambda r: r[1] == "synced", "C.1 synced")
    h.stack.push({"domain": "seed-c2.example", "company_name": "Seed C2 (renamed)"})  # the button again
    h.stack.wait_for(lambda: h.stack.events("d365_lead_already_exists"), what="already_exists")
    again = h.wait_row(
        "seed-c2.example", lambda r: r[2] is not None and first[2] is not None and r[2] > first[2], "C.2"
    )
    # Expected: d365_lead_id unchanged, d365_sync_status = synced; one lead in Dynamics.
    assert again[0] == first[0] and again[1] == "synced"
    assert len(h.stack.admin.leads()) == 1


def test_c3_an_id_dynamics_does_not_have_is_replaced_by_the_new_one(hunter: Callable[..., Hunter]) -> None:
    h = hunter()
    add_company(h.url, "seed-c3.example")
    orphan(h.url, "seed-c3.example")  # the seed's UPDATE: the zero GUID, synced
    held = h.row("seed-c3.example")
    assert held is not None and held[:2] == (SEED_ORPHAN_ID, "synced")
    # The button sends the id Hunter's row holds.
    assert h.stack.push({"domain": "seed-c3.example", "d365_lead_id": held[0]}).status_code == 202
    lead_id, status, last_at = h.wait_row("seed-c3.example", lambda r: r[0] != SEED_ORPHAN_ID, "C.3 new id")
    # Expected: verification failed (404), a new lead, its new GUID in Hunter's row, synced.
    [failed] = h.stack.events("d365_lead_verification_failed")
    assert failed["d365_lead_id"] == SEED_ORPHAN_ID and failed["status_code"] == 404
    assert lead_id is not None and GUID.match(lead_id) and status == "synced" and last_at is not None
    assert [lead["leadid"] for lead in h.stack.admin.leads()] == [lead_id]


def test_c3_a_lead_deleted_in_dynamics_is_recreated_and_hunter_gets_the_new_id(hunter: Callable[..., Hunter]) -> None:
    h = hunter()
    add_company(h.url, "seed-c3b.example")
    h.stack.push({"domain": "seed-c3b.example"})
    old = h.wait_row("seed-c3b.example", lambda r: r[1] == "synced", "created")[0]
    assert old is not None
    h.stack.admin.delete_lead(old)
    h.stack.push({"domain": "seed-c3b.example"})  # the button again, without force and without the id
    lead_id, status, _ = h.wait_row("seed-c3b.example", lambda r: r[0] != old, "recreated")
    assert lead_id is not None and GUID.match(lead_id) and status == "synced"
    assert h.stack.status("seed-c3b.example")["last_outcome"] == "recreated"


def test_d3_persistent_500_ends_in_error_in_hunters_row(hunter: Callable[..., Hunter]) -> None:
    h = hunter(HUNTER_D365_MAX_ATTEMPTS="3")
    add_company(h.url, "seed-d3.example")
    h.stack.admin.add_fault(route="lead_query", status=500, times=-1)
    h.stack.push({"domain": "seed-d3.example"})
    lead_id, status, last_at = h.wait_row("seed-d3.example", lambda r: r[1] == "error", "D.3 error")
    row: dict[str, Any] | None = company(h.url, "seed-d3.example")
    assert row is not None
    # Expected: d365_sync_status = error, d365_sync_error filled; no lead id was ever set.
    assert lead_id is None and status == "error" and last_at is not None
    assert "HTTP 500" in row["d365_sync_error"]
    assert h.stack.queue_length(f"{h.stack.queue_name}-poison") == 1


def test_an_outcome_for_a_domain_hunter_does_not_have_is_counted(hunter: Callable[..., Hunter]) -> None:
    h = hunter()
    add_company(h.url, "known-e2e.example")
    h.stack.push({"domain": "unknown-e2e.example"})
    h.stack.push({"domain": "known-e2e.example"})
    h.wait_row("known-e2e.example", lambda r: r[1] == "synced", "known synced")
    h.stack.wait_for(lambda: h.consumer.totals.unknown == 1, what="the unknown domain counted")
    assert h.consumer.totals.unknown_domains == ["unknown-e2e.example"]
    assert h.row("unknown-e2e.example") is None
