"""The simulator's bulk and service-protection model against Microsoft's docs (bulk-operations.md,
api-limits.md, the In query function), through `DataverseClient` and raw HTTP: CreateMultiple all
or nothing with its duplicate-key rules, `Microsoft.Dynamics.CRM.In(...)`, the request and
execution-time limits with their codes and Retry-After, and the pacer learning the limit."""

from __future__ import annotations

import time

import pytest
import requests

from devstack.simulator import Simulator, SimulatorAdmin
from devstack.simulator.state import RECORD_COST_MS, REQUEST_COST_MS, Limits
from shared.dataverse import D365APIError, D365RateLimitError
from shared.pacing import Pacer, parse_limit
from tests.integration.test_dataverse_client import make_client


def payload(domain: str, **extra: object) -> dict[str, object]:
    return {"subject": f"Bulk {domain}", "lastname": domain, "hnt_domain": domain, "leadsourcecode": 8, **extra}


def test_create_multiple_returns_ids_in_order(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    ids = client.create_many([payload(f"cm-{i}.example") for i in range(5)])
    stored = {lead["leadid"]: lead["hnt_domain"] for lead in admin.leads()}
    assert [stored[i] for i in ids] == [f"cm-{i}.example" for i in range(5)]
    assert admin.routes()["lead_create_multiple"] == {"200": 1}


def test_create_multiple_is_all_or_nothing(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    bad = payload("bad.example", companyname="x" * 101)
    with pytest.raises(D365APIError) as raised:
        client.create_many([payload("good.example"), bad])
    assert raised.value.status == 400 and raised.value.code == "0x80044331" and not raised.value.transient
    assert admin.leads() == []


@pytest.mark.parametrize("alternate_key", [True, False])
def test_duplicate_key_values_fail_the_whole_call(sim: Simulator, admin: SimulatorAdmin, alternate_key: bool) -> None:
    admin.configure(alternate_key=alternate_key)
    client = make_client(sim)
    client.create_many([payload("taken.example")])
    if not alternate_key:  # no key: duplicates are just records (as in Dataverse)
        client.create_many([payload("taken.example"), payload("taken.example")])
        assert len(admin.leads()) == 3
        return
    for targets in ([payload("new.example"), payload("TAKEN.example")], [payload("x.example"), payload("x.example")]):
        with pytest.raises(D365APIError) as raised:
            client.create_many(targets)
        assert raised.value.status == 412 and raised.value.code == "0x80060892"
    assert [lead["hnt_domain"] for lead in admin.leads()] == ["taken.example"]


def test_every_target_needs_its_odata_type(sim: Simulator, admin: SimulatorAdmin) -> None:
    token = make_client(sim).tokens.get_token()
    response = requests.post(
        f"{sim.base_url}/api/data/v9.2/leads/Microsoft.Dynamics.CRM.CreateMultiple",
        json={"Targets": [{"subject": "no type"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 400 and admin.leads() == []


def test_in_query_function_finds_many_domains_in_one_request(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    ids = client.create_many([payload("a.example"), payload("o'brien.example"), payload("c.example")])
    found = client.find_many("hnt_domain", ["A.example", "o'brien.example", "missing.example"])
    assert found == {"a.example": ids[0], "o'brien.example": ids[1]}
    assert admin.routes()["lead_query"] == {"200": 1}


def test_request_limit_answers_its_documented_code_and_retry_after(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.set_limits(max_requests=3, window_seconds=4)
    client = make_client(sim)
    for _ in range(3):
        client.who_am_i()
    with pytest.raises(D365RateLimitError) as raised:
        client.who_am_i()
    assert raised.value.code == "0x80072322"
    assert raised.value.message == "Number of requests exceeded the limit of 3 over time window of 4 seconds."
    assert 1 <= raised.value.retry_after <= 4


def test_execution_time_limit_binds_bulk_calls_not_the_request_count(sim: Simulator, admin: SimulatorAdmin) -> None:
    # Both limits at a tenth of the rates, over a 3 s window: 6 requests, 1200 ms of execution.
    limits = Limits.documented(scale=0.1, window_seconds=3)
    assert limits.max_requests == 6 and limits.max_execution_ms == pytest.approx(1200.0)
    admin.set_limits(**{**limits.__dict__, "execute": False})
    client = make_client(sim)
    client.create_many([payload(f"t{i}.example") for i in range(100)])  # 90.9 + 100 × 9.1 ms
    assert admin.counters()["execution_ms"] == pytest.approx(REQUEST_COST_MS + 100 * RECORD_COST_MS, abs=0.2)
    client.create_many([payload(f"u{i}.example") for i in range(100)])
    with pytest.raises(D365RateLimitError) as raised:
        client.create_many([payload("v.example")])
    assert raised.value.code == "0x80072321"
    assert "exceeded limit of 1,200 milliseconds over time window of 3 seconds" in raised.value.message
    assert parse_limit(raised.value.message) == (1200.0, 3.0)


def test_requests_take_their_execution_time_when_asked(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.set_limits(request_cost_ms=200, execute=True)
    client = make_client(sim)
    client.who_am_i()  # the token first
    started = time.perf_counter()
    client.who_am_i()
    assert time.perf_counter() - started >= 0.2


def test_concurrency_limit_code(sim: Simulator) -> None:
    limits = Limits(max_concurrent=1)
    sim.set_limits(limits)
    assert sim.admit() is None
    refused = sim.admit()
    assert refused is not None and refused.code == "0x80072326"
    assert refused.message == "Number of concurrent requests exceeded the limit of 1."
    sim.release()


def test_pacer_learns_the_request_limit_from_the_first_429(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.set_limits(max_requests=20, window_seconds=2)
    client = make_client(sim)
    client.pacer = Pacer(start_rate=40)
    client.who_am_i()
    refused = 0
    for _ in range(60):
        try:
            client.who_am_i()
        except D365RateLimitError as exc:
            refused += 1
            time.sleep(min(exc.retry_after, 2))
    assert client.pacer.ceiling == pytest.approx(10.0)
    assert refused <= 2


def test_parse_limit_reads_both_documented_messages() -> None:
    assert parse_limit("Number of requests exceeded the limit of 6000 over time window of 300 seconds.") == (
        6000.0,
        300.0,
    )
    text = (
        "Combined execution time of incoming requests exceeded limit of 1,200,000 milliseconds over time "
        "window of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests "
        "and try again later."
    )
    assert parse_limit(text) == (1_200_000.0, 300.0)
    assert parse_limit("Number of concurrent requests exceeded the limit of 52.") is None
