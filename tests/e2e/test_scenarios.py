"""The seed's scenarios, end to end: HTTP → queue → local host → simulator → state and results."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from tests.e2e.conftest import Stack

GUID = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
ACME = {
    "domain": "acme-e2e.com",
    "company_name": "Acme GmbH",
    "email": "info@acme-e2e.com",
    "phone": "+49 30 1234",
    "city": "Berlin",
    "country": "Germany",
    "final_score": 87.4,
    "segment": "enterprise",
    "priority": 1,
    "hunter_id": "h-42",
    "description": "Found by Hunter",
}


def test_c1_create_happy_path(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    response = stack.push(ACME)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["domain"] == "acme-e2e.com" and body["message_id"]
    assert body["status_url"].endswith("/api/v1/d365/leads/acme-e2e.com")
    state = stack.wait_status("acme-e2e.com", "synced")
    assert GUID.match(state["d365_lead_id"]) and state["last_outcome"] == "created"
    assert state["d365_url"] == (
        f"{stack.sim.base_url}/main.aspx?pagetype=entityrecord&etn=lead&id={state['d365_lead_id']}"
    )
    assert "etc=1" not in state["d365_url"] and state["last_synced_at"].endswith("Z")
    [lead] = stack.admin.leads()
    assert lead["leadid"] == state["d365_lead_id"]
    assert (lead["companyname"], lead["emailaddress1"], lead["telephone1"]) == (
        "Acme GmbH",
        "info@acme-e2e.com",
        "+49 30 1234",
    )
    assert (lead["address1_city"], lead["hnt_domain"], lead["hnt_finalscore"], lead["hnt_segment"]) == (
        "Berlin",
        "acme-e2e.com",
        87,
        "enterprise",
    )
    assert lead["leadqualitycode"] == 1 and lead["leadsourcecode"] == 8
    [result] = [json.loads(m) for m in _results(stack)]
    assert result["status"] == "synced" and result["outcome"] == "created" and result["hunter_id"] == "h-42"
    assert stack.events("d365_lead_created") and stack.events("d365_push_enqueued")


def _results(stack: Stack) -> list[str]:
    return [m.content for m in stack.queue(stack.env["HUNTER_D365_RESULTS_QUEUE"]).peek_messages(max_messages=32)]


def test_c2_repush_is_idempotent(start_stack: Callable[..., Stack]) -> None:
    # A re-push is verified in Dynamics, never answered from the state table alone (seed C.2/C.3):
    # 202, one GET in the worker, the same lead, nothing overwritten.
    stack = start_stack()
    stack.push(ACME)
    first = stack.wait_status("acme-e2e.com", "synced")
    again = stack.push({**ACME, "company_name": "Acme GmbH & Co. KG", "final_score": 91})
    assert again.status_code == 202 and again.json()["status"] == "queued"
    stack.wait_for(lambda: stack.events("d365_lead_already_exists"), what="already_exists event")
    state = stack.wait_status("acme-e2e.com", "synced")
    assert state["d365_lead_id"] == first["d365_lead_id"] and state["last_outcome"] == "already_exists"
    assert state["d365_url"] == first["d365_url"]
    forced = stack.push({**ACME, "force": True})
    assert forced.status_code == 202
    stack.wait_for(lambda: len(stack.events("d365_lead_already_exists")) == 2, what="second already_exists")
    [lead] = stack.admin.leads()
    assert lead["companyname"] == "Acme GmbH" and lead["leadid"] == first["d365_lead_id"]


def test_c3_orphaned_id_recreates(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.push(ACME)
    old = stack.wait_status("acme-e2e.com", "synced")["d365_lead_id"]
    stack.admin.delete_lead(old)
    assert stack.push({**ACME, "d365_lead_id": old, "force": True}).status_code == 202
    state = stack.wait_for(
        lambda: (s := stack.status("acme-e2e.com"))["status"] == "synced" and s["d365_lead_id"] != old and s,
        what="a new id",
    )
    assert state["last_outcome"] == "recreated" and GUID.match(state["d365_lead_id"])
    [lead] = stack.admin.leads()
    assert lead["leadid"] == state["d365_lead_id"]
    [event] = stack.events("d365_lead_verification_failed")
    assert event["d365_lead_id"] == old


def test_c3_message_from_hunter_backend_with_a_lost_id(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    lost = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    message = {
        "schema_version": 1,
        "domain": "written-by-backend.io",
        "d365_lead_id": lost,
        "attempt": 0,
        "correlation_id": "backend-1",
        "enqueued_at": "2026-01-30T10:00:00Z",
    }
    stack.queue(stack.queue_name).send_message(json.dumps(message))
    state = stack.wait_status("written-by-backend.io", "synced")
    assert state["last_outcome"] == "recreated" and state["d365_lead_id"] != lost


def test_d1_wrong_secret_errors_then_replays_after_the_fix(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_CLIENT_SECRET="wrong-secret-value")
    assert stack.push(ACME).status_code == 202
    state = stack.wait_status("acme-e2e.com", "error")
    assert "Entra ID refused the client credentials" in state["last_error"]
    assert "AADSTS7000215" in state["last_error"] and "wrong-secret-value" not in state["last_error"]
    assert stack.events("d365_token_acquisition_failed") and stack.events("d365_push_failed")
    poison = f"{stack.queue_name}-poison"
    assert stack.queue_length(poison) == 1 and not stack.admin.leads()
    assert "wrong-secret-value" not in "".join(stack.raw_logs) + "".join(stack.peek(poison))
    stack.stop()
    fixed = start_stack()  # the operator fixes the secret (a new deployment of the setting)
    replayed = fixed.http.post(f"{fixed.url}/api/v1/d365/poison/replay", auth=fixed.replay_auth, timeout=30).json()
    assert replayed == {"replayed": 1, "invalid": 0}
    state = fixed.wait_status("acme-e2e.com", "synced")
    assert state["last_outcome"] == "created" and len(fixed.admin.leads()) == 1
    assert fixed.queue_length(poison) == 0


def test_d2_rate_limit_waits_for_retry_after(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY="true")
    stack.admin.add_fault(route="lead_upsert", status=429, retry_after=3, times=1)
    stack.push(ACME)
    retrying = stack.wait_status("acme-e2e.com", "retrying", "synced")
    state = stack.wait_status("acme-e2e.com", "synced")
    # A 429 uses no attempt (docs/design.md §6): the push that succeeded is still attempt 1.
    assert state["attempts"] == 1 and len(stack.admin.leads()) == 1
    assert retrying["status"] == "retrying" and "0x80072322" in (retrying["last_error"] or "")
    [scheduled] = stack.events("d365_push_retry_scheduled")
    assert scheduled["retry_after"] == 3 and scheduled["delay_seconds"] >= 3 and not scheduled["uses_attempt"]
    requests_seen = stack.admin.requests()
    upserts = [r for r in requests_seen if r["route"] == "lead_upsert"]
    assert [r["status"] for r in upserts] == [429, 201]
    assert upserts[1]["at"] - upserts[0]["at"] >= 3
    assert stack.events("d365_rate_limited")


def test_d3_persistent_500_ends_in_error_and_poison(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_MAX_ATTEMPTS="3")
    stack.admin.add_fault(route="lead_query", status=500, times=-1)
    stack.push(ACME)
    state = stack.wait_status("acme-e2e.com", "error", timeout=40)
    assert state["attempts"] == 3 and "HTTP 500" in state["last_error"]
    delays = [e["delay_seconds"] for e in stack.events("d365_push_retry_scheduled")]
    assert delays == [1, 2]
    assert stack.queue_length(f"{stack.queue_name}-poison") == 1
    assert not stack.admin.leads()
    assert len(stack.events("d365_lead_lookup_error")) == 3


def test_d3_transient_503_then_success(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.admin.add_fault(route="lead_create", status=503, times=1)
    stack.push(ACME)
    state = stack.wait_status("acme-e2e.com", "synced")
    assert state["attempts"] == 2 and len(stack.admin.leads()) == 1
