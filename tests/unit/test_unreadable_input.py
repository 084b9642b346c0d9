"""Data the app cannot read is bad input, not a crash (issue 19): dates with no UTC value in a
message's `enqueued_at` or an outcome's `at`, a state row whose status or outcome this version does
not know, and an outcome dated in the future. Each ends once, with an event naming it; asserted on
the fakes' queues and rows (the same findings end to end: tests/e2e/test_unreadable_input_e2e.py)."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hunter_results.consumer import Consumer
from hunter_results.outcome import Unreadable, read_message
from hunter_results.settings import ConsumerSettings
from shared import state as state_module
from shared.engine import poisoned_message, replay_poison
from shared.models import InputError, LeadPush, parse_iso, parse_message
from shared.pipeline import accept, accept_batch
from tests.unit.fakes import World, run_host, world

OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
LEAD_ID = "6f1c2a9e-0b7d-4c1e-9a55-3d2f8e4b1c00"


@pytest.mark.parametrize("text", OVERFLOWING)
def test_a_time_with_no_utc_value_is_an_input_error_naming_the_field(text: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_iso(text, "enqueued_at")
    assert (caught.value.field, caught.value.code) == ("enqueued_at", "invalid_date")


def test_times_at_the_edges_that_do_convert_still_parse() -> None:
    assert parse_iso("0001-01-01T00:00:00Z") == datetime(1, 1, 1, tzinfo=UTC)
    assert parse_iso("9999-12-31T23:59:59+00:00") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert parse_iso("0001-01-01T01:00:00+01:00") == datetime(1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", OVERFLOWING)
@pytest.mark.parametrize("schema", [1, 2])
def test_both_message_schemas_refuse_an_overflowing_enqueued_at(text: str, schema: int) -> None:
    lead = {"domain": "acme.example"}
    body = {"schema_version": 1, **lead} if schema == 1 else {"schema_version": 2, "leads": [lead]}
    with pytest.raises(InputError) as caught:
        parse_message(json.dumps({**body, "enqueued_at": text}).encode())
    assert caught.value.field == "enqueued_at"


def message(domain: str, enqueued_at: str, schema: int = 1) -> str:
    if schema == 1:
        return json.dumps({"schema_version": 1, "domain": domain, "enqueued_at": enqueued_at})
    return json.dumps({"schema_version": 2, "leads": [{"domain": domain}], "enqueued_at": enqueued_at})


@pytest.mark.parametrize("text", OVERFLOWING)
@pytest.mark.parametrize("schema", [1, 2])
def test_the_worker_rejects_it_once_to_poison(text: str, schema: int, caplog: pytest.LogCaptureFixture) -> None:
    w = world()
    w.queues.push.send_message(message("acme.example", text, schema))
    caplog.set_level(logging.INFO)
    outcomes = run_host(w)
    assert [getattr(o, "action", o) for o in outcomes] == ["rejected"]  # once: no host retries
    assert len(w.queues.poison.messages) == 1 and not w.queues.push.messages
    rejected = [r for r in caplog.records if r.getMessage() == "d365_push_rejected"]
    assert len(rejected) == 1
    assert getattr(rejected[0], "field", None) == "enqueued_at"
    assert not w.dataverse.calls and w.state("acme.example") is None


@pytest.mark.parametrize("text", OVERFLOWING)
def test_replay_counts_it_invalid_and_replays_the_rest(text: str) -> None:
    w = world()
    w.queues.poison.send_message(message("bad.example", text))
    w.queues.poison.send_message(LeadPush(domain="good.example").to_json())
    assert poisoned_message(message("bad.example", text)) is None
    assert replay_poison(w.services) == {"replayed": 1, "invalid": 1}
    assert len(w.queues.poison.visible()) == 1 and len(w.queues.push.messages) == 1


# -- a state row this version cannot read ----------------------------------------------------------


def odd_row(w: World, domain: str, status: str = "paused", outcome: str | None = "merged") -> None:
    w.table.create_entity(
        {
            "PartitionKey": domain,
            "RowKey": "lead",
            "status": status,
            "last_outcome": outcome,
            "d365_lead_id": LEAD_ID,
            "attempts": 2,
        }
    )


def test_an_unknown_status_reads_as_error_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    state_module._UNKNOWN_LOGGED.clear()
    w = world()
    odd_row(w, "odd.example")
    caplog.set_level(logging.INFO)
    for _ in range(3):
        read = w.services.state.get("odd.example")
        assert read is not None and read.status == "error" and read.last_outcome is None
    events = [(r.getMessage(), getattr(r, "field", None)) for r in caplog.records]
    assert events == [("d365_state_value_unknown", "status"), ("d365_state_value_unknown", "last_outcome")]


def test_a_row_with_an_unknown_status_can_be_pushed_again() -> None:
    w = world()
    odd_row(w, "odd.example")
    answer = accept(LeadPush(domain="odd.example"), w.services)
    assert answer.status == "queued"
    run_host(w)
    row = w.state("odd.example")
    assert row is not None and row["status"] == "synced"
    assert row["last_outcome"] in ("already_exists", "recreated", "created")


def test_a_batch_with_an_unknown_status_row_answers_for_every_item() -> None:
    w = world()
    odd_row(w, "odd.example")
    answers = accept_batch([LeadPush(domain="odd.example"), LeadPush(domain="fine.example")], w.services)
    assert [a.status for a in answers] == ["queued", "queued"]


def test_unreadable_times_and_counters_in_a_row_read_as_none_and_zero(caplog: pytest.LogCaptureFixture) -> None:
    state_module._UNKNOWN_LOGGED.clear()
    w = world()
    w.table.create_entity(
        {
            "PartitionKey": "odd.example",
            "RowKey": "lead",
            "status": "syncing",
            "claim_token": "someone",
            "claimed_until": OVERFLOWING[1],  # a claim whose end cannot be read has ended
            "last_verified_at": "last tuesday",
            "attempts": "many",
        }
    )
    caplog.set_level(logging.INFO)
    read = w.services.state.get("odd.example")
    assert read is not None and (read.claimed_until, read.last_verified_at, read.attempts) == (None, None, 0)
    fields = sorted(getattr(r, "field", "") for r in caplog.records if r.getMessage() == "d365_state_value_unknown")
    assert fields == ["attempts", "claimed_until", "last_verified_at"]
    assert accept(LeadPush(domain="odd.example"), w.services).status == "queued"
    run_host(w)
    row = w.state("odd.example")
    assert row is not None and row["status"] == "synced"


# -- the results consumer ---------------------------------------------------------------------------


class Queue:
    """A results or poison queue holding raw contents."""

    def __init__(self, contents: list[str] | None = None) -> None:
        self.messages = [Message(str(i), content) for i, content in enumerate(contents or [])]
        self.sent: list[Any] = []

    def receive_messages(self, *, messages_per_page: int, max_messages: int, visibility_timeout: int) -> list[Any]:
        return self.messages[:max_messages]

    def delete_message(self, message: Any) -> None:
        self.messages.remove(message)

    def send_message(self, content: Any) -> None:
        self.sent.append(content)


class Message:
    def __init__(self, id: str, content: str) -> None:
        self.id = id
        self.pop_receipt = "r"
        self.content = content
        self.dequeue_count = 1


def outcome(at: str) -> str:
    body = {
        "schema_version": 1,
        "domain": "acme.example",
        "status": "synced",
        "outcome": "created",
        "d365_lead_id": LEAD_ID,
        "correlation_id": "c-1",
        "at": at,
    }
    return base64.b64encode(json.dumps(body).encode()).decode()


def never_connect(settings: ConsumerSettings) -> Any:
    raise AssertionError("the database must not be touched for a refused outcome")


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ENV = {"HUNTER_RESULTS_DATABASE_URL": "postgresql://hunter@db/hunter", "AzureWebJobsStorage": "UseDev"}


def consumer(contents: list[str], **env: str) -> tuple[Consumer, Queue, Queue]:
    results, poison = Queue(contents), Queue()
    settings = ConsumerSettings.from_env({**ENV, **env})
    return Consumer(settings, (results, poison), never_connect, clock=lambda: NOW), results, poison


@pytest.mark.parametrize("text", OVERFLOWING)
def test_an_outcome_with_no_utc_value_is_unreadable_naming_at(text: str) -> None:
    with pytest.raises(Unreadable) as caught:
        read_message(outcome(text))
    assert caught.value.field == "at" and "at:" in str(caught.value)


@pytest.mark.parametrize("text", OVERFLOWING)
def test_the_consumer_poisons_an_overflowing_at_instead_of_crashing(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    run, results, poison = consumer([outcome(text)])
    caplog.set_level(logging.INFO)
    counts = run.drain()
    assert counts.poisoned == 1 and poison.sent == [outcome(text)] and not results.messages
    [event] = [r for r in caplog.records if r.getMessage() == "hunter_results_poisoned"]
    assert getattr(event, "field", None) == "at"


def test_the_consumer_refuses_an_outcome_from_the_future_beyond_the_skew(caplog: pytest.LogCaptureFixture) -> None:
    far = (NOW + timedelta(days=365 * 100)).isoformat()
    beyond = (NOW + timedelta(seconds=61)).isoformat()
    run, results, poison = consumer([outcome(far), outcome(beyond)], HUNTER_RESULTS_MAX_CLOCK_SKEW_SECONDS="60")
    caplog.set_level(logging.INFO)
    counts = run.drain()
    assert counts.poisoned == 2 and poison.sent == [outcome(far), outcome(beyond)] and not results.messages
    events = [r for r in caplog.records if r.getMessage() == "hunter_results_poisoned"]
    assert [getattr(r, "field", None) for r in events] == ["at", "at"]
    assert "future" in getattr(events[0], "reason", "")


def test_an_outcome_within_the_skew_reaches_the_table() -> None:
    within = (NOW + timedelta(seconds=59)).isoformat()
    run, _, poison = consumer([outcome(within)], HUNTER_RESULTS_MAX_CLOCK_SKEW_SECONDS="60")
    with pytest.raises(AssertionError, match="database must not be touched"):
        run.drain()
    assert not poison.sent


def test_the_skew_is_a_setting_with_a_default_of_five_minutes() -> None:
    assert ConsumerSettings.from_env(ENV).max_clock_skew_seconds == 300
    assert ConsumerSettings.from_env({**ENV, "HUNTER_RESULTS_MAX_CLOCK_SKEW_SECONDS": "0"}).max_clock_skew_seconds == 0
