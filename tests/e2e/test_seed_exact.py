"""The seed's scenarios exactly as its checklist runs them, and what used to break them: a re-push
asks Dynamics (C.2 / C.3 through the button, no `force`), a token Dataverse refuses is replaced
without a restart, and replay copes with anything the host leaves in the poison queue."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable

from devstack.simulator import DEFAULT_IDENTITY_HEADER, DEFAULT_SECRET, Simulator
from tests.e2e.conftest import Stack

GUID = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
LEAD = {"domain": "button-e2e.com", "company_name": "Button AG", "final_score": 55}


def test_c2_repush_through_the_button_asks_dynamics_once(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY="true")
    stack.push(LEAD)
    first = stack.wait_status("button-e2e.com", "synced")
    before = stack.admin.routes()
    again = stack.push({**LEAD, "company_name": "Button AG & Co."})
    assert again.status_code == 202 and again.json()["status"] == "queued"
    stack.wait_for(lambda: len(stack.events("d365_lead_already_exists")) == 1, what="already_exists")
    state = stack.wait_status("button-e2e.com", "synced")
    assert state["d365_lead_id"] == first["d365_lead_id"] and state["last_outcome"] == "already_exists"
    assert state["last_verified_at"] >= first["last_verified_at"]
    after = stack.admin.routes()
    # The re-push cost exactly one Dataverse request: the GET by the stored id.
    assert after["lead_get"] == {"200": 1} and after.get("lead_upsert") == before.get("lead_upsert")
    assert len(stack.admin.leads()) == 1


def test_c3_button_without_force_recreates_a_deleted_lead(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.push(LEAD)
    old = stack.wait_status("button-e2e.com", "synced")["d365_lead_id"]
    stack.admin.delete_lead(old)
    response = stack.push(LEAD)  # the user presses "Push to Dynamics" again: no force, no id
    assert response.status_code == 202
    state = stack.wait_for(
        lambda: (s := stack.status("button-e2e.com"))["status"] == "synced" and s["d365_lead_id"] != old and s,
        what="a new id",
    )
    assert state["last_outcome"] == "recreated" and GUID.match(state["d365_lead_id"])
    [lead] = stack.admin.leads()
    assert lead["leadid"] == state["d365_lead_id"]
    [failed] = stack.events("d365_lead_verification_failed")
    assert failed["d365_lead_id"] == old and failed["status_code"] == 404
    assert len(stack.events("d365_lead_created")) == 2
    results = [json.loads(m.content) for m in stack.queue(stack.env["HUNTER_D365_RESULTS_QUEUE"]).peek_messages(32)]
    assert [r["outcome"] for r in results] == ["created", "recreated"]
    assert results[1]["d365_lead_id"] == state["d365_lead_id"]


def test_a_caller_supplied_id_of_another_domain_is_never_adopted(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.push({"domain": "other-company.example"})
    other = stack.wait_status("other-company.example", "synced")["d365_lead_id"]
    stack.push({"domain": "victim.example", "d365_lead_id": other})
    state = stack.wait_status("victim.example", "synced")
    assert state["d365_lead_id"] != other and state["last_outcome"] == "created"
    [mismatch] = stack.events("d365_lead_verification_failed")
    assert mismatch["reason"] == "other_domain"
    assert sorted(lead["hnt_domain"] for lead in stack.admin.leads()) == ["other-company.example", "victim.example"]


def test_batches_skip_recently_verified_domains_and_verify_the_rest_in_one_query(
    start_stack: Callable[..., Stack],
) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY="true")
    domains = [f"batch{i}-verify.example" for i in range(5)]
    assert stack.push_batch([{"domain": d} for d in domains]).status_code == 202
    for domain in domains:
        stack.wait_status(domain, "synced")
    before = stack.admin.routes()
    again = stack.push_batch([{"domain": d} for d in domains]).json()
    assert [item["status"] for item in again["items"]] == ["skipped"] * 5
    assert all(item["reason"] == "already_exists" and item["last_verified_at"] for item in again["items"])
    assert stack.admin.routes() == before  # verified less than HUNTER_D365_VERIFY_TTL_SECONDS ago: no request

    gone = stack.status(domains[2])["d365_lead_id"]
    stack.admin.delete_lead(gone)
    forced = stack.push_batch([{"domain": d, "force": True} for d in domains]).json()
    assert [item["status"] for item in forced["items"]] == ["skipped", "skipped", "queued", "skipped", "skipped"]
    state = stack.wait_for(
        lambda: (s := stack.status(domains[2]))["status"] == "synced" and s["d365_lead_id"] != gone and s,
        what="the deleted lead re-created",
    )
    assert state["last_outcome"] == "recreated"
    # Five ids verified at intake in one query; on the bulk path the worker verifies the missing one
    # once more (one query for the ids it knows), looks it up by domain (one In() query) and
    # creates it (one CreateMultiple).
    after = stack.admin.routes()
    assert after["lead_query"]["200"] - before["lead_query"]["200"] == 3
    assert after["lead_create_multiple"]["200"] - before["lead_create_multiple"]["200"] == 1
    assert "lead_get" not in after
    assert len(stack.admin.leads()) == 5


def test_batch_with_ttl_zero_verifies_every_synced_domain(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_VERIFY_TTL_SECONDS="0")
    stack.push_batch([{"domain": "ttl0-a.example"}, {"domain": "ttl0-b.example"}])
    first = stack.wait_status("ttl0-a.example", "synced")
    stack.wait_status("ttl0-b.example", "synced")
    queries = stack.admin.routes()["lead_query"]["200"]
    answer = stack.push_batch([{"domain": "ttl0-a.example"}, {"domain": "ttl0-b.example"}]).json()
    assert [item["status"] for item in answer["items"]] == ["skipped", "skipped"]
    assert stack.admin.routes()["lead_query"]["200"] == queries + 1
    assert stack.status("ttl0-a.example")["last_verified_at"] > first["last_verified_at"]


def test_revoked_tokens_heal_without_a_restart_with_one_token_request(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.push({"domain": "before-revocation.example"})
    stack.wait_status("before-revocation.example", "synced")
    assert stack.admin.routes()["token"] == {"200": 1}
    assert stack.admin.revoke_tokens() >= 1
    stack.push({"domain": "after-revocation.example"})
    state = stack.wait_status("after-revocation.example", "synced", "error", "retrying")
    assert state["status"] == "synced", state
    assert stack.admin.routes()["token"] == {"200": 2}
    [refused] = stack.events("d365_token_refused")
    assert refused["operation"] == "GET leads" and "token" not in json.dumps(refused).replace("d365_token_refused", "")


def test_wrong_secret_everywhere_errors_then_replay_syncs_after_the_fix(
    start_stack: Callable[..., Stack], sim: Simulator
) -> None:
    stack = start_stack(
        HUNTER_D365_CLIENT_SECRET="",
        HUNTER_KEYVAULT_URL=sim.base_url,
        HUNTER_D365_CLIENT_SECRET_NAME=sim.secret_name,
        IDENTITY_ENDPOINT=f"{sim.base_url}/msi/token",
        IDENTITY_HEADER=DEFAULT_IDENTITY_HEADER,
    )
    stack.admin.put_secret(sim.secret_name, "a-wrong-secret-in-the-vault")
    stack.push(LEAD)
    state = stack.wait_status("button-e2e.com", "error")
    assert state["last_error"].startswith("authentication failed") and "AADSTS7000215" in state["last_error"]
    assert stack.events("d365_secret_refreshed")  # it did re-read the vault before giving up
    stack.admin.put_secret(sim.secret_name, DEFAULT_SECRET)  # the operator fixes it
    assert stack.replay().json() == {"replayed": 1, "invalid": 0}
    state = stack.wait_status("button-e2e.com", "synced")
    assert state["last_outcome"] == "created" and len(stack.admin.leads()) == 1


def test_replay_survives_anything_the_host_leaves_in_the_poison_queue(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    poison_name = f"{stack.queue_name}-poison"
    raw = stack.queue(poison_name, encode=False)

    def message(domain: str) -> str:
        return json.dumps({"schema_version": 1, "domain": domain, "attempt": 5, "correlation_id": f"c-{domain[:6]}"})

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    junk = [
        "this is not base64 {",  # copied raw by the host: it could not base64-decode it
        b64(b"\xff\xfe\x80 not utf-8"),
        b64(b"not json at all"),
        b64(json.dumps({"schema_version": 1, "domain": ""}).encode()),
    ]
    for text in junk:
        raw.send_message(text)
    raw.send_message(b64(message("replayed-one.example").encode()))
    wrapped = b64(message("replayed-two.example").encode())
    raw.send_message("\n".join(wrapped[i : i + 16] for i in range(0, len(wrapped), 16)))  # line-broken base64
    raw.send_message(message("replayed-three.example"))  # JSON written without base64
    response = stack.replay()
    assert response.status_code == 200 and response.json() == {"replayed": 3, "invalid": 4}
    for domain in ("replayed-one.example", "replayed-two.example", "replayed-three.example"):
        assert stack.wait_status(domain, "synced")["attempts"] == 1
    # What replay could not use is still there, visible at once, for an operator to look at.
    assert sorted(stack.peek(poison_name)) == sorted(junk)
    assert stack.replay().json() == {"replayed": 0, "invalid": 4}
