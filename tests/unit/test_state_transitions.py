"""The state table's transitions (`state.TRANSITIONS`): who may write which status over which,
and a test per forbidden write — including the race where intake, slow to record `queued`,
overwrote the result of a worker that had already pushed the very message intake sent."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.models import ERROR, NOT_SYNCED, QUEUED, RETRYING, SYNCED, SYNCING, SyncState, SyncStatus
from shared.state import ForbiddenTransition, StateStore, check_transition
from tests.unit.fakes import Clock, FakeTable

DOMAIN = "race.example"


def store() -> tuple[StateStore, FakeTable, Clock]:
    clock = Clock()
    table = FakeTable()
    return StateStore(table, 60, clock), table, clock


def status(table: FakeTable) -> str:
    return str(table.rows[(DOMAIN, "lead")][0]["status"])


def test_slow_intake_never_overwrites_the_result_of_its_own_message() -> None:
    states, table, clock = store()
    sent_at = clock()  # intake read "no row", then sent its message ...
    clock.advance(1)
    claim = states.claim(DOMAIN, "cid-1")  # ... which a worker took and finished at once
    assert claim is not None
    states.finish(claim, status=SYNCED, d365_lead_id="6f9619ff-8b86-d011-b42d-00c04fc964ff")
    clock.advance(1)
    result = states.mark_queued(DOMAIN, "cid-1", None, read=False, sent_at=sent_at)  # intake, late
    assert result.status == SYNCED and status(table) == SYNCED


def test_a_replay_requeues_an_error_row_written_before_it_sent() -> None:
    states, table, clock = store()
    claim = states.claim(DOMAIN, "cid-1")
    assert claim is not None
    states.finish(claim, status=ERROR, last_error="authentication failed")
    clock.advance(60)
    assert states.mark_queued(DOMAIN, "cid-1", sent_at=clock()).status == QUEUED
    assert status(table) == QUEUED


def test_intake_leaves_a_live_claim_alone_and_takes_over_an_expired_one() -> None:
    states, table, clock = store()
    assert states.claim(DOMAIN, "worker") is not None
    assert states.mark_queued(DOMAIN, "cid-2").status == SYNCING and status(table) == SYNCING
    clock.advance(61)  # the worker died: its lease ran out
    assert states.mark_queued(DOMAIN, "cid-2").status == QUEUED


def test_finish_after_the_claim_was_taken_over_writes_nothing() -> None:
    states, table, clock = store()
    first = states.claim(DOMAIN, "slow-worker")
    assert first is not None
    clock.advance(61)
    second = states.claim(DOMAIN, "other-worker")
    assert second is not None
    assert states.finish(first, status=SYNCED, d365_lead_id="x") is None
    assert status(table) == SYNCING and states.finish(second, status=SYNCED) is not None


@pytest.mark.parametrize(
    ("writer", "before", "after"),
    [
        ("finish", QUEUED, SYNCED),
        ("finish", SYNCED, ERROR),
        ("finish", None, SYNCED),
        ("finish", SYNCING, QUEUED),
        ("verify", QUEUED, SYNCED),
        ("verify", ERROR, SYNCED),
        ("verify", SYNCED, QUEUED),
        ("intake", SYNCED, SYNCED),
        ("intake", ERROR, SYNCING),
        ("claim", QUEUED, SYNCED),
        ("claim", NOT_SYNCED, RETRYING),
    ],
)
def test_forbidden_transitions_raise(writer: str, before: SyncStatus | None, after: SyncStatus) -> None:
    previous = None if before is None else SyncState(domain=DOMAIN, status=before)
    with pytest.raises(ForbiddenTransition):
        check_transition(writer, previous, SyncState(domain=DOMAIN, status=after))


@pytest.mark.parametrize(
    ("writer", "before", "after"),
    [
        ("intake", None, QUEUED),
        ("intake", SYNCED, QUEUED),
        ("intake", ERROR, QUEUED),
        ("claim", None, SYNCING),
        ("claim", SYNCED, SYNCING),
        ("finish", SYNCING, SYNCED),
        ("finish", SYNCING, RETRYING),
        ("finish", SYNCING, ERROR),
        ("verify", SYNCED, SYNCED),
    ],
)
def test_allowed_transitions_pass(writer: str, before: SyncStatus | None, after: SyncStatus) -> None:
    previous = None if before is None else SyncState(domain=DOMAIN, status=before)
    check_transition(writer, previous, SyncState(domain=DOMAIN, status=after))


def test_the_store_refuses_a_forbidden_write_before_it_reaches_the_table() -> None:
    states, table, _ = store()
    claim = states.claim(DOMAIN, "w")
    assert claim is not None
    with pytest.raises(ForbiddenTransition):
        states.finish(claim, status=QUEUED)
    queued = replace(states.mark_queued(DOMAIN + ".other", "c"), domain=DOMAIN + ".other")
    with pytest.raises(ForbiddenTransition):
        states.mark_verified(queued, "2026-11-27T12:00:00Z")
    assert status(table) == SYNCING
