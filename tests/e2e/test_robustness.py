"""Concurrency, lost responses, bad input and the batch endpoint, end to end."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.conftest import Stack

LEAD = {"domain": "same-domain.com", "company_name": "Same"}


@pytest.mark.parametrize("domain_key", ["false", "true"])
def test_same_domain_ten_times_at_once_is_one_lead(start_stack: Callable[..., Stack], domain_key: str) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY=domain_key)
    stack.admin.configure(latency_ms=150)  # long enough for the pushes to overlap
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda _: stack.push(LEAD).status_code, range(10)))
    assert set(codes) <= {200, 202}
    stack.wait_status("same-domain.com", "synced")
    stack.wait_for(lambda: stack.queue_length(stack.queue_name) == 0, what="queue drained", timeout=40)
    stack.wait_status("same-domain.com", "synced")
    assert len(stack.admin.leads()) == 1
    creates = stack.events("d365_lead_created")
    assert len(creates) == 1


@pytest.mark.parametrize(("domain_key", "route"), [("false", "lead_create"), ("true", "lead_upsert")])
def test_commit_then_drop_is_adopted_on_retry(start_stack: Callable[..., Stack], domain_key: str, route: str) -> None:
    stack = start_stack(HUNTER_D365_DOMAIN_KEY=domain_key)
    stack.admin.add_fault(route=route, drop_after_commit=True, times=1)
    stack.push(LEAD)
    state = stack.wait_status("same-domain.com", "synced")
    [lead] = stack.admin.leads()
    assert state["d365_lead_id"] == lead["leadid"]
    assert state["last_outcome"] == "already_exists" and state["attempts"] == 2


def test_bad_queue_messages_go_to_poison_once(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    raw = stack.queue(stack.queue_name, encode=False)
    raw.send_message("this is not base64 !!!")
    encoded = stack.queue(stack.queue_name)
    encoded.send_message("{not json")
    encoded.send_message(json.dumps({"schema_version": 1, "domain": "x' or 1 eq 1"}))
    encoded.send_message(json.dumps({"schema_version": 99, "domain": "fine.com"}))
    encoded.send_message("[" * 20000)
    raw.send_message(base64.b64encode(b"\xff\xfe\x00garbage").decode())
    poison = f"{stack.queue_name}-poison"
    # The host deletes each original just after copying it to poison: wait for both sides.
    stack.wait_for(
        lambda: stack.queue_length(poison) == 6 and stack.queue_length(stack.queue_name) == 0,
        what="six poison messages and an empty queue",
    )
    rejected = stack.events("d365_push_rejected")
    assert {e["source"] for e in rejected} == {"queue"}
    assert sorted(e["error_code"] for e in rejected) == [
        "invalid_domain",
        "invalid_encoding",
        "invalid_json",
        "invalid_json",
        "unsupported_schema",
    ]
    assert len(stack.events("host_message_not_base64")) == 1
    assert stack.admin.routes().get("lead_create") is None


@pytest.mark.parametrize(
    ("body", "status", "error", "field"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"\xff\xfe", 400, "invalid_encoding", None),
        (b"", 400, "invalid_body", None),
        (b"[]", 400, "invalid_body", None),
        (json.dumps({"company_name": "x"}).encode(), 400, "missing_field", "domain"),
        (json.dumps({"domain": "x' or hnt_domain ne 'y"}).encode(), 400, "invalid_domain", "domain"),
        (json.dumps({"domain": "a.com", "email": "e" * 101}).encode(), 400, "too_long", "email"),
        (json.dumps({"domain": "a.com", "final_score": "high"}).encode(), 400, "invalid_type", "final_score"),
        (json.dumps({"domain": "a.com", "surprise": 1}).encode(), 400, "unknown_field", "surprise"),
        (b'{"domain": "a.com", "description": "' + b"d" * 70_000 + b'"}', 413, "payload_too_large", None),
    ],
)
def test_http_bad_input_is_400_with_field_and_nothing_enqueued(
    start_stack: Callable[..., Stack], body: bytes, status: int, error: str, field: str | None
) -> None:
    stack = start_stack()
    response = stack.http.post(
        f"{stack.url}/api/v1/d365/push-lead", data=body, timeout=30, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    payload = response.json()
    assert payload["error"] == error and payload["message"]
    assert payload.get("field") == field
    assert stack.queue_length(stack.queue_name) == 0


def test_batch_intake_reports_per_item_and_enqueues_the_good_ones(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    leads: list[object] = [{"domain": f"batch-{i}.example"} for i in range(40)]
    leads += [{"domain": "not a domain"}, {"domain": "batch-0.example"}, "nope"]
    response = stack.http.post(f"{stack.url}/api/v1/d365/push-leads", json={"leads": leads}, timeout=60)
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (40, 3)
    assert [item["error"] for item in body["items"][40:]] == ["invalid_domain", "duplicate_domain", "invalid_body"]
    assert all(item["status"] == "queued" and item["message_id"] for item in body["items"][:40])
    stack.wait_for(lambda: len(stack.admin.leads()) == 40, timeout=60, what="40 leads")
    results = stack.env["HUNTER_D365_RESULTS_QUEUE"]
    stack.wait_for(lambda: stack.queue_length(results) == 40, what="40 outcomes")
    again = stack.http.post(f"{stack.url}/api/v1/d365/push-leads", json={"leads": leads[:40]}, timeout=60).json()
    skipped = [item for item in again["items"] if item["status"] == "skipped"]
    assert again["accepted"] == 40 and len(skipped) == 40
    assert all(item["reason"] == "already_exists" and item["d365_lead_id"] for item in skipped)


def test_batch_over_the_limit_is_refused_whole(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    response = stack.http.post(
        f"{stack.url}/api/v1/d365/push-leads", json={"leads": [{"domain": "a.com"}] * 1001}, timeout=30
    )
    assert response.status_code == 400 and response.json()["error"] == "too_many_leads"
    assert stack.queue_length(stack.queue_name) == 0


def test_disabled_integration_refuses_intake_and_the_worker_defers(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_ENABLED="false")
    response = stack.push(LEAD)
    assert response.status_code == 503 and response.json()["error"] == "d365_integration_disabled"
    message = {"schema_version": 1, "domain": "deferred.example", "attempt": 0}
    stack.queue(stack.queue_name).send_message(json.dumps(message))
    stack.wait_for(lambda: stack.events("d365_push_deferred"), what="deferral")
    assert not stack.admin.leads()
    assert stack.queue(f"{stack.queue_name}-poison").peek_messages() == []


def test_status_of_an_unknown_domain_reads_not_synced(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    response = stack.http.get(f"{stack.url}/api/v1/d365/leads/never-seen.example", timeout=10)
    # Not an error (a browser would log a failed request for every row never pushed): 200, the seed's word.
    assert response.status_code == 200
    assert response.json() == {
        "domain": "never-seen.example",
        "status": "not_synced",
        "d365_lead_id": None,
        "d365_url": None,
        "last_synced_at": None,
        "last_verified_at": None,
        "last_outcome": None,
        "last_error": None,
        "attempts": 0,
        "next_attempt_at": None,
    }
    bad = stack.http.get(f"{stack.url}/api/v1/d365/leads/not_a_domain", timeout=10)
    assert bad.status_code == 400 and bad.json()["field"] == "domain"


def test_health_endpoints_report_without_secrets(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    assert requests.get(f"{stack.url}/api/healthz/live", timeout=10).json() == {"status": "live"}
    ready = requests.get(f"{stack.url}/api/healthz/ready", timeout=30)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "settings": "ok",
        "auth_mode": "client_secret",
        "enabled": True,
        "storage": "ok",
        "dataverse_auth": "ok",
    }
    assert stack.env["HUNTER_D365_CLIENT_SECRET"] not in ready.text
    broken = start_stack(HUNTER_D365_CLIENT_SECRET="wrong-one")
    not_ready = requests.get(f"{broken.url}/api/healthz/ready", timeout=30)
    assert not_ready.status_code == 503 and "wrong-one" not in not_ready.text
    # Anonymous route: the kind of failure, never the identity provider's text or the client id.
    assert not_ready.json()["checks"]["dataverse_auth"] == "error: authentication failed"
    assert "AADSTS" not in not_ready.text and broken.env["HUNTER_D365_CLIENT_ID"] not in not_ready.text
    # A flood of probes is answered from a few seconds' cache, not with a token request each.
    before = stack.admin.routes().get("token", {})
    for _ in range(10):
        assert requests.get(f"{broken.url}/api/healthz/ready", timeout=30).status_code == 503
    assert stack.admin.routes().get("token", {}) == before


def test_correlation_id_travels_from_http_to_dataverse(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.push(LEAD, headers={"x-correlation-id": "trace-me-123"})
    stack.wait_status("same-domain.com", "synced")
    seen = stack.admin.requests()
    assert any(r["route"] == "lead_create" and r["client_request_id"] == "trace-me-123" for r in seen)


HUGE_INTEGER = "1" + "0" * 5000  # past Python's 4,300-digit int-string limit
HOSTILE_LEADS: list[tuple[str, str, str]] = [
    # (JSON text of one lead, the field the 400 names, the error code)
    ('{"domain": "surrogate.example", "company_name": "a\\ud800"}', "company_name", "invalid_characters"),
    ('{"domain": "surrogate-key.example", "\\ud800": 1}', "\\ud800", "unknown_field"),
    ('{"domain": "nan-score.example", "final_score": NaN}', "final_score", "invalid_field"),
    ('{"domain": "inf-score.example", "final_score": -Infinity}', "final_score", "invalid_field"),
    ('{"domain": "huge.example", "priority": ' + HUGE_INTEGER + "}", "priority", "invalid_field"),
    ('{"domain": "escape.example", "company_name": "\\u001b[31mRed"}', "company_name", "invalid_characters"),
    ('{"domain": "nul.example", "description": "a\\u0000b"}', "description", "invalid_characters"),
    ('{"domain": "emoji.example", "company_name": "' + "\\ud83d\\ude00" * 51 + '"}', "company_name", "too_long"),
    ('{"domain": "' + ".".join(["a" * 63, "b" * 63, "c" * 61, "com"]) + '"}', "domain", "invalid_domain"),
]


def test_hostile_single_pushes_are_400_naming_the_field(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    for text, field, error in HOSTILE_LEADS:
        response = stack.http.post(
            f"{stack.url}/api/v1/d365/push-lead",
            data=text.encode("utf-8"),
            timeout=30,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 400, (field, response.text)
        assert (response.json()["field"], response.json()["error"]) == (field, error)
    assert stack.queue_length(stack.queue_name) == 0


def test_a_hostile_batch_answers_per_item_and_pushes_the_rest(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    good = [json.dumps({"domain": f"hostile-batch-{i}.example"}) for i in range(20)]
    # One hostile item after every other good one: none may sink the batch or the items after it.
    hostile = [text for text, _, _ in HOSTILE_LEADS] * 3
    items = [piece for pair in zip(good, hostile[: len(good)], strict=True) for piece in pair]
    body = ('{"leads": [' + ",".join(items) + "]}").encode("utf-8")
    response = stack.http.post(
        f"{stack.url}/api/v1/d365/push-leads", data=body, timeout=60, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    answer = response.json()
    assert len(answer["items"]) == len(items)
    assert (answer["accepted"], answer["rejected"]) == (20, len(items) - 20)
    expected = {text: (field, error) for text, field, error in HOSTILE_LEADS}
    for text, item in zip(items, answer["items"], strict=True):
        if text in expected:
            assert item["status"] == "rejected" and (item["field"], item["error"]) == expected[text], item
        else:
            assert item["status"] == "queued", item
    stack.wait_for(lambda: len(stack.admin.leads()) == 20, timeout=60, what="the 20 good leads in Dynamics")


def test_hostile_queue_messages_are_rejected_once_naming_the_field(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    encoded = stack.queue(stack.queue_name)
    encoded.send_message('{"schema_version": 1, "domain": "newline.example", "correlation_id": "abc\\n"}')
    encoded.send_message('{"schema_version": 1, "domain": "nan.example", "final_score": NaN}')
    encoded.send_message('{"schema_version": 1, "domain": "huge.example", "attempt": ' + HUGE_INTEGER + "}")
    encoded.send_message('{"schema_version": 1, "domain": "surrogate.example", "city": "\\udc00"}')
    poison = f"{stack.queue_name}-poison"
    stack.wait_for(
        lambda: stack.queue_length(poison) == 4 and stack.queue_length(stack.queue_name) == 0,
        what="four poison messages and an empty queue",
    )
    rejected = stack.events("d365_push_rejected")
    assert sorted(e["field"] for e in rejected) == ["attempt", "city", "correlation_id", "final_score"]
    assert stack.admin.routes().get("lead_create") is None
