"""`DataverseClient` and the MSAL token provider against the simulator (seed B, C.3, D.1–D.3)."""

from __future__ import annotations

import logging
import socket
import time

import pytest
import requests

from devstack.simulator import DEFAULT_SECRET, Simulator, SimulatorAdmin
from shared.dataverse import (
    D365APIError,
    D365AuthenticationError,
    D365RateLimitError,
    D365RequestNotSentError,
    D365ResponseLostError,
    DataverseClient,
    MsalTokenProvider,
)
from shared.dataverse.auth import StaticSecret
from shared.ids import is_guid


def make_client(sim: Simulator, secret: str = DEFAULT_SECRET) -> DataverseClient:
    tokens = MsalTokenProvider(
        sim.tenant_id,
        sim.client_id,
        StaticSecret(secret),
        f"{sim.base_url}/.default",
        authority_host=sim.base_url,
    )
    return DataverseClient(sim.base_url, tokens, timeout=10)


def token_requests(admin: SimulatorAdmin) -> int:
    return sum(admin.routes().get("token", {}).values())


def test_token_is_acquired_once_and_then_served_from_cache(
    sim: Simulator, caplog: pytest.LogCaptureFixture, admin: SimulatorAdmin
) -> None:
    client = make_client(sim)
    caplog.set_level(logging.INFO, logger="shared.dataverse.auth")
    client.who_am_i()
    client.who_am_i()
    client.get_lead("00000000-0000-0000-0000-000000000001")
    assert token_requests(admin) == 1
    acquired = [r for r in caplog.records if r.getMessage() == "d365_token_acquired"]
    assert len(acquired) == 1 and acquired[0].token_source == "identity_provider"  # type: ignore[attr-defined]


def test_d1_wrong_secret_is_an_authentication_error(
    sim: Simulator, caplog: pytest.LogCaptureFixture, admin: SimulatorAdmin
) -> None:
    client = make_client(sim, secret="not-the-secret")
    with pytest.raises(D365AuthenticationError) as raised:
        client.who_am_i()
    assert raised.value.code == "invalid_client"
    assert "AADSTS7000215" in raised.value.message
    assert "not-the-secret" not in str(raised.value)
    assert any(r.getMessage() == "d365_token_acquisition_failed" for r in caplog.records)
    assert admin.routes().get("whoami") is None


def test_expired_token_is_refused_by_dataverse_with_401(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.configure(token_lifetime=0)
    client = make_client(sim)
    with pytest.raises(D365AuthenticationError) as raised:
        client.who_am_i()
    assert raised.value.status == 401


def test_request_without_token_gets_the_real_401(sim: Simulator) -> None:
    response = requests.get(f"{sim.base_url}/api/data/v9.2/WhoAmI", timeout=10)
    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")


def test_create_then_get_and_find_by_domain(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    lead_id = client.create_lead({"subject": "Hunter: Acme", "lastname": "Acme", "hnt_domain": "acme.com"})
    assert client.get_lead(lead_id) == lead_id
    assert client.find_lead("hnt_domain", "ACME.COM") == lead_id
    stored = admin.leads()
    assert [lead["leadid"] for lead in stored] == [lead_id]
    assert stored[0]["companyname"] is None and stored[0]["hnt_domain"] == "acme.com"


def test_c3_missing_id_is_none_not_an_error(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    lead_id = client.create_lead({"subject": "gone", "hnt_domain": "gone.com"})
    admin.delete_lead(lead_id)
    assert client.get_lead(lead_id) is None
    assert admin.routes()["lead_get"] == {"404": 1}


def test_d2_rate_limit_carries_retry_after(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.add_fault(route="lead_create", status=429, retry_after=17, times=1)
    client = make_client(sim)
    with pytest.raises(D365RateLimitError) as raised:
        client.create_lead({"subject": "x"})
    assert raised.value.retry_after == 17
    assert raised.value.transient and raised.value.code == "0x80072322"
    assert client.create_lead({"subject": "x"})  # the fault was used up


@pytest.mark.parametrize("status", [500, 503])
def test_d3_server_errors_are_transient(sim: Simulator, status: int, admin: SimulatorAdmin) -> None:
    admin.add_fault(route="lead_query", status=status, times=1)
    client = make_client(sim)
    with pytest.raises(D365APIError) as raised:
        client.find_lead("hnt_domain", "acme.com")
    assert raised.value.status == status and raised.value.transient


def test_service_request_id_travels_on_the_error_and_in_the_event(
    sim: Simulator, admin: SimulatorAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    admin.add_fault(route="lead_query", status=503, times=1)
    client = make_client(sim)
    caplog.set_level(logging.WARNING, logger="shared.dataverse")
    with pytest.raises(D365APIError) as raised:
        client.find_lead("hnt_domain", "acme.com")
    request_id = raised.value.service_request_id
    assert request_id and is_guid(request_id)
    events = [r for r in caplog.records if r.getMessage() == "d365_api_error"]
    assert [e.service_request_id for e in events] == [request_id]  # type: ignore[attr-defined]
    assert events[0].request_sent is True  # type: ignore[attr-defined]


def test_connection_dropped_after_commit_is_transient_and_the_write_happened(
    sim: Simulator, admin: SimulatorAdmin
) -> None:
    admin.add_fault(route="lead_create", drop_after_commit=True, times=1)
    client = make_client(sim)
    with pytest.raises(D365ResponseLostError) as raised:
        client.create_lead({"subject": "x", "hnt_domain": "dropped.com"})
    assert raised.value.transient and raised.value.status == 0
    assert raised.value.code == "connection_dropped" and raised.value.service_request_id is None
    assert client.find_lead("hnt_domain", "dropped.com") is not None


def test_a_refused_connection_was_never_sent(sim: Simulator) -> None:
    client = make_client(sim)
    client.who_am_i()  # a token, so that only the Dataverse request meets the closed port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket is closed
    client.api_url = f"https://127.0.0.1:{closed}/api/data/v9.2"
    with pytest.raises(D365RequestNotSentError) as raised:
        client.create_lead({"subject": "x", "hnt_domain": "never-sent.com"})
    assert raised.value.transient and raised.value.code == "connect_error"
    assert isinstance(raised.value.__cause__, requests.ConnectionError)


def test_a_silent_server_is_a_read_timeout_after_sending(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.add_fault(route="lead_create", latency_ms=1500, times=1)
    client = make_client(sim)
    client.who_am_i()
    client.transport.timeout = 0.5
    with pytest.raises(D365ResponseLostError) as raised:
        client.create_lead({"subject": "x", "hnt_domain": "slow.com"})
    assert raised.value.code == "read_timeout"
    client.transport.timeout = 10
    deadline = time.monotonic() + 10
    while client.find_lead("hnt_domain", "slow.com") is None:  # sent: the create lands after all
        assert time.monotonic() < deadline, "the timed-out create never landed"
        time.sleep(0.05)


def test_injection_in_a_domain_never_matches_another_lead(sim: Simulator) -> None:
    client = make_client(sim)
    client.create_lead({"subject": "other", "hnt_domain": "other.com"})
    assert client.find_lead("hnt_domain", "x' or hnt_domain ne 'y") is None
    assert client.find_lead("hnt_domain", "o'brien.com") is None
    obrien = client.create_lead({"subject": "o'brien", "hnt_domain": "o'brien.com"})
    assert client.find_lead("hnt_domain", "o'brien.com") == obrien


def test_the_simulator_parses_literals_like_dataverse(sim: Simulator) -> None:
    client = make_client(sim)
    token = client.tokens.get_token()
    unterminated = requests.get(
        f"{sim.base_url}/api/data/v9.2/leads",
        params={"$filter": "hnt_domain eq 'x"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert unterminated.status_code == 400
    assert "unterminated" in unterminated.json()["error"]["message"]
    # Unescaped, the injection would match everything: the parser is real enough to prove it.
    client.create_lead({"subject": "other", "hnt_domain": "other.com"})
    injected = requests.get(
        f"{sim.base_url}/api/data/v9.2/leads",
        params={"$filter": "hnt_domain eq 'x' or hnt_domain ne 'y'"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert len(injected.json()["value"]) == 1


def test_over_length_field_is_the_real_validation_error(sim: Simulator) -> None:
    client = make_client(sim)
    with pytest.raises(D365APIError) as raised:
        client.create_lead({"subject": "x", "companyname": "a" * 101})
    assert raised.value.status == 400 and not raised.value.transient
    assert raised.value.code == "0x80044331"
    assert "'companyname'" in raised.value.message and "'100'" in raised.value.message


def test_unknown_column_is_rejected(sim: Simulator) -> None:
    client = make_client(sim)
    with pytest.raises(D365APIError) as raised:
        client.create_lead({"subject": "x", "nonsense": 1})
    assert raised.value.code == "0x0" and "nonsense" in raised.value.message


def test_create_only_upsert_through_the_alternate_key(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    first = client.create_lead_if_absent("hnt_domain", "acme.com", {"subject": "a", "hnt_domain": "acme.com"})
    assert first.created and first.lead_id
    second = client.create_lead_if_absent("hnt_domain", "acme.com", {"subject": "b", "hnt_domain": "acme.com"})
    assert second == type(second)(None, created=False)
    assert client.get_lead_by_key("hnt_domain", "acme.com") == first.lead_id
    assert client.get_lead_by_key("hnt_domain", "nobody.com") is None
    assert len(admin.leads()) == 1


def test_plain_create_violating_the_key_is_412(sim: Simulator) -> None:
    client = make_client(sim)
    client.create_lead({"subject": "a", "hnt_domain": "acme.com"})
    with pytest.raises(D365APIError) as raised:
        client.create_lead({"subject": "b", "hnt_domain": "ACME.com"})
    assert raised.value.status == 412 and raised.value.code == "0x80060892"


def test_update_only_upsert_on_absent_key_is_404(sim: Simulator) -> None:
    client = make_client(sim)
    token = client.tokens.get_token()
    response = requests.patch(
        f"{sim.base_url}/api/data/v9.2/leads(hnt_domain='nobody.com')",
        json={"subject": "x"},
        headers={"Authorization": f"Bearer {token}", "If-Match": "*"},
        timeout=10,
    )
    assert response.status_code == 404


def test_service_protection_limits_answer_429_with_the_documented_code(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.set_limits(max_requests=2, window_seconds=60)
    client = make_client(sim)
    client.who_am_i()
    client.who_am_i()
    with pytest.raises(D365RateLimitError) as raised:
        client.who_am_i()
    assert raised.value.code == "0x80072322" and 1 <= raised.value.retry_after <= 60


def test_correlation_id_travels_as_client_request_id(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = make_client(sim)
    client.who_am_i(correlation_id="corr-123")
    seen = admin.requests()
    assert any(r["route"] == "whoami" and r["client_request_id"] == "corr-123" for r in seen)


def test_http_base_url_is_refused() -> None:
    with pytest.raises(ValueError):
        DataverseClient("http://org.crm.dynamics.com", tokens=None)  # type: ignore[arg-type]
