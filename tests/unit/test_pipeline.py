"""The push use case, branch by branch, on in-memory fakes (`fakes.py`): claimed, throttled,
disabled, verify 200 / 404 / another domain's lead, adopt, create, 412, transient, 429, exhausted,
authentication, configuration, a bad message, a bug at each step of the push, storage failing,
and intake (single and batch) and replay. Each test asserts on outcomes: the state row, the leads,
the messages left in the queues."""

from __future__ import annotations

import json
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError

from shared.config import ConfigError
from shared.dataverse import D365APIError, D365AuthenticationError, D365RateLimitError, D365ResponseLostError
from shared.engine import MAX_FAILED_DELIVERIES, replay_poison
from shared.engine import process_message as process
from shared.models import LeadPush
from shared.pipeline import accept, accept_batch
from tests.unit.fakes import Boom, World, run_host, world

DOMAIN = "acme.example"


def push(w: World, **fields: Any) -> None:
    """Put a message on the push queue as intake would."""
    w.queues.push.send_message(LeadPush(domain=DOMAIN, **fields).to_json())


def deliver(w: World, dequeue_count: int = 1) -> Any:
    """One delivery of the first push message; it is removed as the host does after a return."""
    message = w.queues.push.messages[0]
    result = process(str(message.content).encode(), w.services, lambda: 0.0, dequeue_count)
    w.queues.push.delete_message(message)
    return result


def state(w: World) -> dict[str, Any]:
    row = w.state(DOMAIN)
    assert row is not None
    return row


def results(w: World) -> list[dict[str, Any]]:
    return [json.loads(text) for text in w.queues.results.texts()]


def synced(w: World, lead_id: str) -> None:
    """A row as a finished push leaves it."""
    w.table.create_entity(
        {"PartitionKey": DOMAIN, "RowKey": "lead", "status": "synced", "d365_lead_id": lead_id, "attempts": 1}
    )


# -- the happy paths -----------------------------------------------------------------------------


def test_create_without_the_key_finds_then_creates() -> None:
    w = world()
    push(w, company_name="Acme")
    result = deliver(w)
    assert result.action == "done" and result.outcome == "created"
    assert [c[0] for c in w.dataverse.calls] == ["find_lead", "create_lead"]
    row = state(w)
    assert row["status"] == "synced" and row["d365_lead_id"] == result.lead_id and not row["claim_token"]
    assert row["last_verified_at"] == row["last_synced_at"]
    assert [r["outcome"] for r in results(w)] == ["created"]


def test_create_with_the_key_is_one_upsert() -> None:
    w = world(HUNTER_D365_DOMAIN_KEY="true")
    push(w)
    assert deliver(w).outcome == "created"
    assert [c[0] for c in w.dataverse.calls] == ["create_lead_if_absent"]


def test_412_on_the_upsert_adopts_the_existing_lead() -> None:
    w = world(HUNTER_D365_DOMAIN_KEY="true")
    existing = w.dataverse.add(hnt_domain=DOMAIN)
    push(w)
    result = deliver(w)
    assert (result.outcome, result.lead_id) == ("already_exists", existing)
    assert [c[0] for c in w.dataverse.calls] == ["create_lead_if_absent", "get_lead_by_key"]
    assert len(w.dataverse.leads) == 1


def test_a_lead_found_by_domain_is_adopted() -> None:
    w = world()
    existing = w.dataverse.add(hnt_domain=DOMAIN)
    push(w)
    assert (deliver(w).outcome, state(w)["d365_lead_id"]) == ("already_exists", existing)
    assert len(w.dataverse.leads) == 1


def test_verify_200_is_already_exists_with_one_call() -> None:
    w = world()
    lead_id = w.dataverse.add(hnt_domain=DOMAIN)
    synced(w, lead_id)
    push(w)
    assert deliver(w).outcome == "already_exists"
    assert w.dataverse.calls == [("read_lead", lead_id)]


def test_verify_404_recreates() -> None:
    w = world()
    synced(w, "6f9619ff-8b86-d011-b42d-00c04fc964ff")
    push(w)
    result = deliver(w)
    assert result.outcome == "recreated" and state(w)["d365_lead_id"] == result.lead_id
    assert [c[0] for c in w.dataverse.calls] == ["read_lead", "find_lead", "create_lead"]


def test_a_known_id_of_another_domain_is_not_adopted() -> None:
    w = world()
    other = w.dataverse.add(hnt_domain="other.example")
    push(w, d365_lead_id=other)
    result = deliver(w)
    assert result.outcome == "created" and result.lead_id != other
    assert w.dataverse.leads[other]["hnt_domain"] == "other.example"


# -- deferrals ---------------------------------------------------------------------------------


def test_a_domain_claimed_by_another_worker_is_deferred_without_calls() -> None:
    w = world()
    assert w.services.state.claim(DOMAIN, "someone-else") is not None
    push(w)
    result = deliver(w, dequeue_count=3)
    assert result.action == "deferred" and 1 <= result.delay <= 2 and not w.dataverse.calls
    [copy] = w.queues.push.messages
    # The two deliveries of the old copy that ended without an answer travel with the new copy.
    assert json.loads(copy.content)["failed_deliveries"] == 2


def test_a_throttled_process_defers_for_the_pause() -> None:
    w = world()
    w.services.throttle.pause(30)
    push(w)
    result = deliver(w)
    assert result.action == "deferred" and result.delay >= 30 and not w.dataverse.calls
    assert w.state(DOMAIN) is None


def test_a_disabled_integration_defers() -> None:
    w = world(HUNTER_D365_ENABLED="false")
    push(w)
    assert deliver(w).action == "deferred" and len(w.queues.push.messages) == 1 and not w.dataverse.calls


# -- failures ------------------------------------------------------------------------------------


def test_a_transient_error_retries_with_backoff_then_succeeds() -> None:
    w = world()
    w.dataverse.fail["create_lead"] = [D365APIError("unavailable", 503, "0x0", transient=True)]
    push(w)
    result = deliver(w)
    assert (result.action, result.delay) == ("retry", 1)
    row = state(w)
    assert row["status"] == "retrying" and row["next_attempt_at"] and not row["claim_token"]
    [copy] = w.queues.push.messages
    assert json.loads(copy.content)["attempt"] == 1
    run_host(w)
    assert state(w)["status"] == "synced" and state(w)["attempts"] == 2 and len(w.dataverse.leads) == 1


def test_a_429_pauses_the_process_and_waits_at_least_retry_after() -> None:
    w = world()
    w.dataverse.fail["find_lead"] = [D365RateLimitError("too many", 30)]
    push(w)
    result = deliver(w)
    assert result.action == "retry" and result.delay >= 30
    assert w.services.throttle.remaining() >= 29


def test_transient_errors_until_the_attempts_run_out_end_in_poison() -> None:
    w = world()
    w.dataverse.fail["find_lead"] = [D365APIError("boom", 500, transient=True) for _ in range(10)]
    push(w)
    outcomes = run_host(w)
    assert [o.action for o in outcomes] == ["retry", "retry", "poisoned"]
    assert state(w)["status"] == "error" and state(w)["last_outcome"] == "failed"
    assert len(w.queues.poison.messages) == 1 and [r["status"] for r in results(w)] == ["error"]


@pytest.mark.parametrize(
    "error",
    [
        D365AuthenticationError("authentication failed: refused", 401, "invalid_client"),
        D365APIError("no privilege", 403, "0x80040220"),
        ConfigError("HUNTER_D365_CLIENT_SECRET_NAME: secret 'x' not found in HUNTER_KEYVAULT_URL"),
    ],
    ids=["auth", "permanent", "config"],
)
def test_errors_that_waiting_cannot_fix_go_to_poison_at_once(error: Exception) -> None:
    w = world()
    w.dataverse.fail["find_lead"] = [error]
    push(w)
    assert deliver(w).action == "poisoned"
    row = state(w)
    assert row["status"] == "error" and str(error.args[0])[:20] in row["last_error"] and not row["claim_token"]
    assert len(w.queues.poison.messages) == 1 and not w.queues.push.messages


def test_a_bad_message_goes_to_poison_once() -> None:
    w = world()
    w.queues.push.send_message('{"schema_version": 1, "domain": "not a domain"}')
    assert run_host(w)[0].action == "rejected"
    assert len(w.queues.poison.messages) == 1 and not w.dataverse.calls


# -- a bug anywhere never loops -------------------------------------------------------------------


@pytest.mark.parametrize("step", ["read_lead", "find_lead", "create_lead", "create_lead_if_absent", "get_lead_by_key"])
def test_an_unexpected_exception_at_any_step_ends_in_poison_with_state_error(step: str) -> None:
    w = world(HUNTER_D365_DOMAIN_KEY="true" if step in ("create_lead_if_absent", "get_lead_by_key") else "false")
    if step == "read_lead":
        synced(w, w.dataverse.add(hnt_domain=DOMAIN))
    if step == "get_lead_by_key":
        w.dataverse.add(hnt_domain=DOMAIN)  # so the upsert answers 412 and the key lookup runs
    w.dataverse.fail[step] = [Boom for _ in range(50)]
    push(w)
    outcomes = run_host(w)
    assert outcomes[-1].action == "poisoned" and len(outcomes) == 3  # the attempt limit, no more
    row = state(w)
    assert row["status"] == "error" and "unexpected Boom" in row["last_error"] and not row["claim_token"]
    assert len(w.queues.poison.messages) == 1


def test_a_bug_in_the_mapping_ends_in_poison(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> dict[str, Any]:
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr("shared.engine.lead_payload", broken)
    w = world()
    push(w)
    run_host(w)
    assert state(w)["status"] == "error" and len(w.queues.poison.messages) == 1


def test_storage_failing_after_the_create_is_bounded_and_adopts_on_recovery() -> None:
    w = world()
    # The state write that records `synced` fails three times (the exception escapes to the host).
    original = w.table.update_entity
    calls = {"n": 0}

    def flaky(entity: Any, mode: Any = None, **kwargs: Any) -> Any:
        calls["n"] += 1
        if entity.get("status") == "synced" and calls["n"] <= 3:
            raise ServiceRequestError("table down")
        return original(entity, mode, **kwargs)

    w.table.update_entity = flaky  # type: ignore[method-assign]
    push(w)
    outcomes = run_host(w)
    assert any(isinstance(o, ServiceRequestError) for o in outcomes)
    assert state(w)["status"] == "synced" and len(w.dataverse.leads) == 1  # adopted, not created twice


def test_deliveries_that_keep_failing_reach_poison_however_often_they_are_deferred() -> None:
    w = world()
    # Claiming always fails with a storage error: every delivery ends without an answer.
    w.table.fail["get_entity"] = [ServiceRequestError("table down") for _ in range(100)]
    push(w)
    outcomes = run_host(w)
    assert outcomes[-1] == "host_poison" and len(w.queues.poison.messages) == 1
    # And a copy that carries earlier failures is poisoned by the app itself at the limit.
    w2 = world()
    w2.queues.push.send_message(
        json.dumps({"schema_version": 1, "domain": DOMAIN, "failed_deliveries": MAX_FAILED_DELIVERIES - 1})
    )
    assert deliver(w2, dequeue_count=2).action == "poisoned"
    assert w2.state(DOMAIN) is not None and state(w2)["status"] == "error"


# -- intake ---------------------------------------------------------------------------------------


def test_a_single_push_of_a_synced_domain_is_queued_for_verification() -> None:
    w = world()
    synced(w, w.dataverse.add(hnt_domain=DOMAIN))
    answer = accept(LeadPush(domain=DOMAIN), w.services)
    assert answer.status == "queued" and len(w.queues.push.messages) == 1 and not w.dataverse.calls
    assert state(w)["status"] == "queued" and state(w)["d365_lead_id"]


def test_a_state_write_failing_after_the_send_still_answers_queued() -> None:
    w = world()
    w.table.fail["get_entity"] = [ServiceRequestError("table down"), ServiceRequestError("table down")]
    w.table.fail["create_entity"] = [ServiceRequestError("table down")]
    answer = accept(LeadPush(domain=DOMAIN), w.services, current=None, read=False)
    assert answer.status == "queued" and len(w.queues.push.messages) == 1


def test_batch_skips_recent_verifications_and_verifies_the_rest_in_one_query() -> None:
    w = world()
    ids = {d: w.dataverse.add(hnt_domain=d) for d in ("a.example", "b.example", "c.example")}
    for domain, lead_id in ids.items():
        w.table.create_entity(
            {"PartitionKey": domain, "RowKey": "lead", "status": "synced", "d365_lead_id": lead_id, "attempts": 1}
        )
    del w.dataverse.leads[ids["b.example"]]
    leads = [LeadPush(domain=d) for d in ("a.example", "b.example", "c.example", "new.example")]
    answers = accept_batch(leads, w.services)
    assert [a.status for a in answers] == ["skipped", "queued", "skipped", "queued"]
    assert [c[0] for c in w.dataverse.calls] == ["read_leads"]
    # Each skip is published as `already_exists`, for Hunter's row.
    assert [(r["domain"], r["outcome"]) for r in results(w)] == [
        ("a.example", "already_exists"),
        ("c.example", "already_exists"),
    ]
    w.dataverse.calls.clear()
    again = accept_batch([leads[0], leads[2]], w.services)  # verified a moment ago: no call at all
    assert [a.status for a in again] == ["skipped", "skipped"] and not w.dataverse.calls
    forced = accept_batch([LeadPush(domain="a.example", force=True)], w.services)
    assert forced[0].status == "skipped" and [c[0] for c in w.dataverse.calls] == ["read_leads"]


def test_batch_enqueues_everything_when_dataverse_cannot_verify_now() -> None:
    w = world(HUNTER_D365_VERIFY_TTL_SECONDS="0")
    lead_id = w.dataverse.add(hnt_domain=DOMAIN)
    synced(w, lead_id)
    w.dataverse.fail["read_leads"] = [D365RateLimitError("slow down", 5)]
    [answer] = accept_batch([LeadPush(domain=DOMAIN)], w.services)
    assert answer.status == "queued" and len(w.queues.push.messages) == 1


# -- replay -----------------------------------------------------------------------------------------


def test_replay_uses_every_valid_message_and_leaves_the_rest_visible() -> None:
    w = world()
    poison = w.queues.poison
    for junk in ("not base64 {", "aGVsbG8=", '{"schema_version": 1, "domain": ""}'):
        poison.send_message(junk)
    poison.send_message(LeadPush(domain="one.example", attempt=3).to_json())
    poison.send_message(LeadPush(domain="two.example", failed_deliveries=4).to_json())
    assert replay_poison(w.services) == {"replayed": 2, "invalid": 3}
    fresh = [json.loads(t) for t in w.queues.push.texts()]
    assert [(m["domain"], m["attempt"]) for m in fresh] == [("one.example", 0), ("two.example", 0)]
    assert all(not m.get("failed_deliveries") for m in fresh)
    assert len(poison.visible()) == 3


def test_events_carry_the_service_request_id_and_whether_the_request_went_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = world()
    lost = D365ResponseLostError("the connection was lost", "connection_dropped")
    refused = D365APIError("no privilege", 403, "0x80040220", service_request_id="req-403")
    w.dataverse.fail["find_lead"] = [D365APIError("busy", 503, "0x0", True, service_request_id="req-503")]
    w.dataverse.fail["create_lead"] = [lost, refused]
    caplog.set_level("INFO", logger="shared.engine")
    push(w)
    run_host(w)
    events = [
        (r.getMessage(), getattr(r, "service_request_id", "-"), getattr(r, "request_sent", "-")) for r in caplog.records
    ]
    assert ("d365_lead_lookup_error", "req-503", "-") in events
    assert ("d365_push_retry_scheduled", "req-503", True) in events
    assert ("d365_push_retry_scheduled", None, True) in events  # sent; its answer was lost
    assert ("d365_push_failed", "req-403", "-") in events
