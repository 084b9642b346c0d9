"""The simulator's service protection beyond one window (devstack/simulator/protection.py, from
Microsoft Learn's "Service protection API limits" and "Requests limits and allocations"): limits
at Dataverse's proportions, several web servers chosen by the affinity cookie, each with its own
budget, a Retry-After that grows for a client that keeps sending, the entitlement counted per
record; and what dropping the affinity cookie (shared/services.py) buys against several servers."""

from __future__ import annotations

import pytest
import requests

from devstack.simulator import Simulator, SimulatorAdmin, state
from devstack.simulator.proportions import proportional
from devstack.simulator.protection import AFFINITY_COOKIE
from devstack.simulator.state import DOCUMENTED_MAX_EXECUTION_MS, RECORD_COST_MS, REQUEST_COST_MS, Limits
from shared.dataverse import D365RateLimitError, DataverseClient
from shared.services import http_session
from tests.integration.test_dataverse_client import make_client


def share_of_window(limits: Limits, records: int) -> float:
    return limits.cost_ms(records) / limits.max_execution_ms


@pytest.mark.parametrize("time_scale", [1.0, 0.1, 0.01])
def test_proportional_limits_keep_one_call_the_same_fraction_of_a_window(time_scale: float) -> None:
    """Time is scaled, not budgets alone: the costs shrink with the window, so a 100-record
    CreateMultiple stays the fraction of the execution budget it is in Dataverse."""
    real = (REQUEST_COST_MS + 100 * RECORD_COST_MS) / DOCUMENTED_MAX_EXECUTION_MS
    limits = proportional(rate_scale=1.0, time_scale=time_scale)
    assert limits.window_seconds == pytest.approx(300 * time_scale)
    assert share_of_window(limits, 100) == pytest.approx(real)
    assert limits.max_requests / limits.window_seconds == pytest.approx(20.0)  # the real rate
    slower = proportional(rate_scale=0.1, time_scale=time_scale)
    assert share_of_window(slower, 100) == pytest.approx(real)
    coarse = proportional(rate_scale=0.1, time_scale=time_scale, granularity=0.02)
    assert share_of_window(coarse, 100) == pytest.approx(0.02)


def test_retry_after_grows_for_a_client_that_keeps_sending(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(state, "now", lambda: clock[0])
    sim.set_limits(Limits(max_requests=1, window_seconds=30, retry_after_growth_seconds=2))
    assert sim.admit() is None
    sim.release()
    clock[0] += 20
    first = sim.admit()
    assert first is not None and first.code == "0x80072322" and first.retry_after == pytest.approx(10)
    pauses = [first.retry_after]
    for _ in range(3):  # sent during the pause: each one is told to wait longer
        again = sim.admit()
        assert again is not None and again.code == "0x80072322"
        pauses.append(again.retry_after)
    assert pauses == pytest.approx([10, 12, 14, 16])
    for _ in range(20):  # but never past one window from now
        again = sim.admit()
        assert again is not None and again.retry_after <= 30
    clock[0] += 30  # a client that waited the whole pause is admitted
    assert sim.admit() is None
    sim.release()


def test_each_web_server_keeps_its_own_budget_chosen_by_the_affinity_cookie(sim: Simulator) -> None:
    sim.set_limits(Limits(max_requests=2, window_seconds=60, web_servers=3))
    servers = [sim.web_server(None) for _ in range(3)]
    assert sorted(index for index, _ in servers) == [0, 1, 2]
    cookie = servers[1][1]
    assert cookie is not None and cookie.startswith(f"{AFFINITY_COOKIE}=")
    pinned = cookie.split(";")[0]
    assert sim.web_server(pinned) == (1, None)  # the cookie names its server, no new cookie
    for _ in range(2):
        assert sim.admit(1) is None
        sim.release(0, 1)
    assert sim.admit(1) is not None  # server 1's window is full …
    assert sim.admit(2) is None  # … server 2's is not
    sim.release(0, 2)


def test_the_entitlement_counts_every_record_of_a_bulk_message(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    client.create_many([{"subject": f"e{i}", "lastname": "e", "hnt_domain": f"ent-{i}.example"} for i in range(25)])
    client.who_am_i()
    counters = admin.counters()
    assert counters["entitlement_requests"] == 25 + 1
    assert sum(admin.routes()["lead_create_multiple"].values()) == 1  # one request for service protection


def sim_client(sim: Simulator, session: requests.Session) -> DataverseClient:
    client = make_client(sim)
    return DataverseClient(sim.base_url, client.tokens, session, timeout=10)


def admitted_in_one_window(sim: Simulator, session: requests.Session, attempts: int) -> int:
    client = sim_client(sim, session)
    admitted = 0
    for _ in range(attempts):
        try:
            client.who_am_i()
            admitted += 1
        except D365RateLimitError:
            pass
    return admitted


def test_dropping_the_affinity_cookie_spreads_requests_over_the_web_servers(sim: Simulator) -> None:
    """Against 4 web servers with 10 requests per window each: a session that keeps the cookie is
    pinned to one server and gets 10 requests through; ours gets all 40 of the 4 servers."""
    make_client(sim).who_am_i()  # the token first (not a limited request once limits are set)
    sim.set_limits(Limits(max_requests=10, window_seconds=120, web_servers=4))
    pinned = requests.Session()
    assert admitted_in_one_window(sim, pinned, 40) == 10
    assert any(cookie.name == AFFINITY_COOKIE for cookie in pinned.cookies)
    sim.set_limits(Limits(max_requests=10, window_seconds=120, web_servers=4))
    ours = http_session()
    assert admitted_in_one_window(sim, ours, 40) == 40
    assert not any(cookie.name == AFFINITY_COOKIE for cookie in ours.cookies)
