"""Data the app cannot read, end to end on the local host, Azurite and the simulator (issue 19):
a message whose `enqueued_at` has no UTC value goes to poison once (it crashed the worker five times
before the host poisoned it), replay counts such a message `invalid` in a JSON answer (it was a 500
with an empty body), and a state row whose status this version does not know is read as `error`
(push, status and batch answered 500). The results consumer's side: tests/integration/test_hunter_results.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient

from shared.models import LeadPush
from tests.e2e.conftest import Stack

OVERFLOWING = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
GONE_ID = "0b5e7d1c-4a3f-4e2b-9c8d-7f6e5d4c3b2a"  # an id the simulator does not hold


def test_an_enqueued_at_with_no_utc_value_is_rejected_once_to_poison(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    encoded = stack.queue(stack.queue_name)
    for at in OVERFLOWING:
        encoded.send_message(json.dumps({"schema_version": 1, "domain": "overflow.example", "enqueued_at": at}))
    encoded.send_message(
        json.dumps({"schema_version": 2, "leads": [{"domain": "overflow2.example"}], "enqueued_at": OVERFLOWING[0]})
    )
    poison = f"{stack.queue_name}-poison"
    stack.wait_for(
        lambda: stack.queue_length(poison) == 3 and stack.queue_length(stack.queue_name) == 0,
        what="three poison messages and an empty queue",
    )
    rejected = stack.events("d365_push_rejected")
    assert len(rejected) == 3  # once each: the app's own rejection, never the host's five failures
    assert [e["field"] for e in rejected if e["error_code"] == "invalid_date"] == ["enqueued_at"] * 3
    assert not any("OverflowError" in line for line in stack.raw_logs)
    assert stack.admin.routes().get("lead_create") is None and stack.admin.routes().get("lead_query") is None


def test_replay_counts_an_overflowing_message_invalid_and_answers_json(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    poison = stack.queue(f"{stack.queue_name}-poison")
    poison.send_message(json.dumps({"schema_version": 1, "domain": "bad.example", "enqueued_at": OVERFLOWING[1]}))
    poison.send_message(LeadPush(domain="replayed.example").to_json())
    response = stack.replay()
    assert response.status_code == 200, response.text
    assert response.json() == {"replayed": 1, "invalid": 1}
    stack.wait_status("replayed.example", "synced")
    assert stack.queue_length(f"{stack.queue_name}-poison") == 1  # the unreadable one, left for a person


def write_row(stack: Stack, domain: str, status: str, **fields: str) -> None:
    service = TableServiceClient.from_connection_string(stack.azurite.connection_string)
    name = stack.env["HUNTER_D365_STATE_TABLE"]
    with contextlib.suppress(ResourceExistsError):
        service.create_table(name)
    service.get_table_client(name).upsert_entity(
        {"PartitionKey": domain, "RowKey": "lead", "status": status, "d365_lead_id": GONE_ID, "attempts": 1, **fields}
    )


def test_status_push_and_batch_read_an_unknown_status_as_error(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    write_row(stack, "rolled-back.example", "paused")  # written by a newer version, say
    write_row(stack, "batch-odd.example", "frozen")

    # Status: 200 with a JSON body (it was a 500), and reading writes nothing.
    answer = stack.http.get(f"{stack.url}/api/v1/d365/leads/rolled-back.example", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "error" and answer.json()["d365_lead_id"] == GONE_ID
    assert stack.state_row("rolled-back.example")["status"] == "paused"

    # Push: accepted, and the worker verifies the stored id (gone) and re-creates the lead.
    pushed = stack.push({"domain": "rolled-back.example"})
    assert pushed.status_code == 202, pushed.text
    state = stack.wait_status("rolled-back.example", "synced")
    assert state["last_outcome"] == "recreated" and state["d365_lead_id"] != GONE_ID

    # Batch: every item answered, the odd row's among them.
    batch = stack.push_batch([{"domain": "batch-odd.example"}, {"domain": "batch-fine.example"}])
    assert batch.status_code == 202, batch.text
    assert [item["status"] for item in batch.json()["items"]] == ["queued", "queued"]
    stack.wait_status("batch-odd.example", "synced")
    stack.wait_status("batch-fine.example", "synced")

    # Logged once per row and value, however many times it was read.
    unknown = stack.events("d365_state_value_unknown")
    assert sorted((e["domain"], e["value"]) for e in unknown) == [
        ("batch-odd.example", "frozen"),
        ("rolled-back.example", "paused"),
    ]


def test_a_claim_whose_end_cannot_be_read_has_ended(start_stack: Callable[..., Stack]) -> None:
    # `9999-12-31T23:59:59-01:00` compared as a live claim for ever: the domain could never be
    # pushed again. Read as no time at all, the claim has ended and the push goes through.
    stack = start_stack()
    write_row(stack, "stuck.example", "syncing", claim_token="gone-worker", claimed_until=OVERFLOWING[1])
    assert stack.status("stuck.example")["status"] == "syncing"
    assert stack.push({"domain": "stuck.example"}).status_code == 202
    stack.wait_status("stuck.example", "synced")
    [event] = stack.events("d365_state_value_unknown")
    assert (event["domain"], event["field"]) == ("stuck.example", "claimed_until")
