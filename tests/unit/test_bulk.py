"""The bulk path on in-memory fakes: one lookup and one CreateMultiple per message, each lead
recorded and published, a bad lead alone in the poison queue, and exactly one lead per domain
through dropped responses, duplicate deliveries, 429s, claims held elsewhere and crashes."""

from __future__ import annotations

import json
from typing import Any

from shared.dataverse import D365APIError, D365RateLimitError
from shared.models import MAX_MESSAGE_BYTES, LeadBatch, LeadPush
from shared.pipeline import accept_batch, pack
from tests.unit.fakes import World, run_host, world


def batch_message(*domains: str, **envelope: Any) -> str:
    return json.dumps({"schema_version": 2, "leads": [{"domain": d} for d in domains], **envelope})


def enqueue(w: World, body: str) -> None:
    w.queues.push.send_message(body)


def leads_by_domain(w: World) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for lead_id, record in w.dataverse.leads.items():
        found.setdefault(str(record.get("hnt_domain")), []).append(lead_id)
    return found


def results(w: World) -> list[dict[str, Any]]:
    return [json.loads(text) for text in w.queues.results.texts()]


def calls(w: World, method: str) -> int:
    return sum(1 for name, _ in w.dataverse.calls if name == method)


def test_new_leads_take_one_lookup_and_one_create_multiple() -> None:
    w = world()
    domains = [f"bulk-{i}.example" for i in range(100)]
    enqueue(w, batch_message(*domains))
    run_host(w)
    assert sorted(leads_by_domain(w)) == sorted(domains)
    assert [name for name, _ in w.dataverse.calls] == ["find_many", "create_many"]
    assert {r["domain"]: r["outcome"] for r in results(w)} == dict.fromkeys(domains, "created")
    for domain in domains:
        state = w.state(domain)
        assert state is not None and state["status"] == "synced" and state["d365_lead_id"]


def test_existing_leads_are_adopted_and_known_ids_verified_in_one_query_each() -> None:
    w = world()
    adopted = w.dataverse.add(hnt_domain="there.example")
    enqueue(w, batch_message("there.example", "new.example"))
    run_host(w)
    outcomes = {r["domain"]: (r["outcome"], r["d365_lead_id"]) for r in results(w)}
    assert outcomes["there.example"] == ("already_exists", adopted)
    assert outcomes["new.example"][0] == "created"
    # A second push: both ids are known and verified with one read_leads.
    w.dataverse.calls.clear()
    del w.dataverse.leads[adopted]
    enqueue(w, batch_message("there.example", "new.example"))
    run_host(w)
    assert [name for name, _ in w.dataverse.calls] == ["read_leads", "find_many", "create_many"]
    latest = {r["domain"]: r["outcome"] for r in results(w)[2:]}
    assert latest == {"there.example": "recreated", "new.example": "already_exists"}
    assert all(len(ids) == 1 for ids in leads_by_domain(w).values())


def test_a_bad_lead_is_split_out_and_ends_alone_in_the_poison_queue() -> None:
    w = world()
    domains = [f"split-{i}.example" for i in range(16)]
    w.dataverse.refuse = {"split-5.example"}
    enqueue(w, batch_message(*domains))
    run_host(w)
    assert sorted(leads_by_domain(w)) == sorted(d for d in domains if d != "split-5.example")
    [poisoned] = w.queues.poison.texts()
    assert json.loads(poisoned)["domain"] == "split-5.example"
    assert json.loads(poisoned)["schema_version"] == 1  # replayable as a single lead
    state = w.state("split-5.example")
    assert state is not None and state["status"] == "error"
    assert calls(w, "create_many") == 1 + 2 * 4  # halving 16 down to the one at fault


def test_response_lost_after_commit_is_adopted_on_the_next_delivery() -> None:
    w = world()
    w.dataverse.drop_after_create_many = 1
    domains = [f"drop-{i}.example" for i in range(10)]
    enqueue(w, batch_message(*domains))
    run_host(w)
    assert {d: len(ids) for d, ids in leads_by_domain(w).items()} == dict.fromkeys(domains, 1)
    final = {r["domain"]: r for r in results(w)}
    assert {r["outcome"] for r in final.values()} == {"already_exists"}
    assert calls(w, "create_many") == 1
    assert not w.queues.poison.texts()


def test_duplicate_delivery_of_a_batch_creates_each_lead_once() -> None:
    w = world()
    body = batch_message("twice-a.example", "twice-b.example")
    enqueue(w, body)
    enqueue(w, body)
    run_host(w)
    assert {d: len(ids) for d, ids in leads_by_domain(w).items()} == {"twice-a.example": 1, "twice-b.example": 1}
    assert calls(w, "create_many") == 1


def test_429_waits_retry_after_without_using_an_attempt() -> None:
    w = world(HUNTER_D365_MAX_ATTEMPTS="1")
    w.dataverse.fail["create_many"] = [D365RateLimitError("Combined execution time …", 7.0, code="0x80072321")] * 3
    enqueue(w, batch_message("busy-1.example", "busy-2.example"))
    run_host(w)
    assert sorted(leads_by_domain(w)) == ["busy-1.example", "busy-2.example"]
    assert not w.queues.poison.texts()


def test_transient_failures_until_the_attempts_run_out_poison_the_message_once() -> None:
    w = world()
    w.dataverse.fail["create_many"] = [D365APIError("down", 503, "0x0", transient=True)] * 10
    enqueue(w, batch_message("down-1.example", "down-2.example"))
    run_host(w)
    assert not w.dataverse.leads
    [poisoned] = [json.loads(text) for text in w.queues.poison.texts()]  # one replayable bulk message
    assert poisoned["schema_version"] == 2
    assert sorted(lead["domain"] for lead in poisoned["leads"]) == ["down-1.example", "down-2.example"]
    assert {r["status"] for r in results(w)} == {"error"}


def test_a_domain_claimed_elsewhere_waits_while_the_others_go_on() -> None:
    w = world()
    held = w.services.state.claim("held.example", "someone-else")
    assert held is not None
    enqueue(w, batch_message("held.example", "free.example"))
    run_host(w)  # the foreign claim's lease (60 s) passes while the deferred lead waits
    assert sorted(leads_by_domain(w)) == ["free.example", "held.example"]


def test_an_invalid_lead_goes_alone_to_poison_and_a_repeated_domain_is_pushed_once() -> None:
    w = world()
    body = json.dumps(
        {
            "schema_version": 2,
            "leads": [{"domain": "ok.example"}, {"domain": "not a domain"}, {"domain": "OK.example"}],
        }
    )
    enqueue(w, body)
    run_host(w)
    assert {d: len(ids) for d, ids in leads_by_domain(w).items()} == {"ok.example": 1}
    [poisoned] = w.queues.poison.texts()
    assert json.loads(poisoned) == {"domain": "not a domain"}


def test_an_invalid_envelope_is_rejected_once() -> None:
    w = world()
    enqueue(w, json.dumps({"schema_version": 2, "leads": []}))
    run_host(w)
    assert len(w.queues.poison.texts()) == 1 and not w.dataverse.leads


def test_crashing_deliveries_split_the_batch_into_single_lead_messages_that_go_on() -> None:
    w = world()
    enqueue(w, batch_message("crash-1.example", "crash-2.example", failed_deliveries=4))
    run_host(w)
    # Each lead went on alone with a fresh count: one lead that crashes cannot take the others down.
    assert sorted(leads_by_domain(w)) == ["crash-1.example", "crash-2.example"]
    assert not w.queues.poison.texts()


def test_a_key_taken_meanwhile_is_adopted() -> None:
    w = world()
    existing = w.dataverse.add(hnt_domain="raced.example")
    real = w.dataverse.find_many
    misses = [1]

    def find_many(column: str, values: list[str], correlation_id: str | None = None) -> dict[str, str]:
        if misses:  # the lead appears just after this lookup
            misses.pop()
            return {}
        return real(column, values, correlation_id)

    w.dataverse.find_many = find_many  # type: ignore[method-assign]
    enqueue(w, batch_message("raced.example", "calm.example"))
    run_host(w)
    assert {d: len(ids) for d, ids in leads_by_domain(w).items()} == {"raced.example": 1, "calm.example": 1}
    final = {r["domain"]: (r["outcome"], r["d365_lead_id"]) for r in results(w)}
    assert final["raced.example"] == ("already_exists", existing)
    assert final["calm.example"][0] == "created"


def test_intake_packs_leads_into_bulk_messages_within_64_kib() -> None:
    w = world(HUNTER_D365_BULK_SIZE="100")
    leads = [LeadPush(domain=f"in-{i}.example", description="d" * 1900) for i in range(250)]
    answers = accept_batch(leads, w.services)
    assert {a.status for a in answers} == {"queued"}
    bodies = w.queues.push.texts()
    assert all(len(body.encode()) <= MAX_MESSAGE_BYTES for body in bodies)
    packed = [json.loads(body) for body in bodies]
    assert {b["schema_version"] for b in packed} == {2}
    assert sum(len(b["leads"]) for b in packed) == 250
    assert {w.state(lead.domain)["status"] for lead in leads} == {"queued"}  # type: ignore[index]
    run_host(w)
    assert len(leads_by_domain(w)) == 250


def test_bulk_size_one_keeps_single_lead_messages() -> None:
    w = world(HUNTER_D365_BULK_SIZE="1")
    accept_batch([LeadPush(domain="a.example"), LeadPush(domain="b.example")], w.services)
    assert {json.loads(body)["schema_version"] for body in w.queues.push.texts()} == {1}


def test_pack_keeps_every_lead_in_order() -> None:
    leads = [LeadPush(domain=f"p-{i}.example") for i in range(7)]
    batches = pack(leads, 3, None)
    assert [len(b.leads) for b in batches] == [3, 3, 1]
    assert [lead.domain for b in batches for lead in b.leads] == [lead.domain for lead in leads]
    again, refused = LeadBatch.from_message(json.loads(batches[0].to_json()))
    assert not refused and [lead.correlation_id for lead in again.leads] == [
        lead.correlation_id for lead in batches[0].leads
    ]


def test_single_lead_messages_still_take_the_single_path() -> None:
    w = world(HUNTER_D365_DOMAIN_KEY="true")
    enqueue(w, LeadPush(domain="click.example").to_json())
    [result] = run_host(w)
    assert result.outcome == "created"
    assert [name for name, _ in w.dataverse.calls] == ["create_lead_if_absent"]
