"""A token Dataverse refuses before its own expiry is replaced, not kept (issue: "a refused token
is kept"): the client drops it, gets one fresh token — one request to Entra ID or the identity
endpoint however many threads were refused at once — and resends; only a second 401 is an
authentication error. The simulator revokes the tokens it issued, as Dataverse's 401 with its
`WWW-Authenticate` challenge shows a revoked token."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from azure.identity import ManagedIdentityCredential

from devstack.simulator import DEFAULT_SECRET, Simulator, SimulatorAdmin
from shared.dataverse import D365AuthenticationError, DataverseClient, ManagedIdentityTokenProvider, MsalTokenProvider
from shared.dataverse.auth import StaticSecret


def msal_client(sim: Simulator) -> DataverseClient:
    tokens = MsalTokenProvider(
        sim.tenant_id, sim.client_id, StaticSecret(DEFAULT_SECRET), f"{sim.base_url}/.default", sim.base_url
    )
    return DataverseClient(sim.base_url, tokens, timeout=10)


def mi_client(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> DataverseClient:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
    tokens = ManagedIdentityTokenProvider(ManagedIdentityCredential, f"{sim.base_url}/.default")
    return DataverseClient(sim.base_url, tokens, timeout=10)


def test_revoked_token_answers_401_with_the_dataverse_challenge(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = msal_client(sim)
    token = client.tokens.get_token()
    assert admin.revoke_tokens() == 1
    response = requests.get(
        f"{sim.base_url}/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 401 and response.content == b""
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer authorization_uri=") and f"resource_id={sim.base_url}/" in challenge


def test_revoked_msal_token_is_replaced_with_one_token_request(
    sim: Simulator, caplog: pytest.LogCaptureFixture, admin: SimulatorAdmin
) -> None:
    client = msal_client(sim)
    client.who_am_i()
    admin.revoke_tokens()
    caplog.set_level(logging.INFO)
    assert client.who_am_i()["UserId"]
    counted = admin.routes()
    assert counted["token"] == {"200": 2}
    assert counted["whoami"] == {"200": 2, "401": 1}
    refused = [r for r in caplog.records if r.getMessage() == "d365_token_refused"]
    assert len(refused) == 1 and refused[0].operation == "GET WhoAmI"  # type: ignore[attr-defined]
    said = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert client.tokens.get_token() not in said


def test_a_burst_of_401s_on_many_threads_makes_one_token_request(sim: Simulator, admin: SimulatorAdmin) -> None:
    client = msal_client(sim)
    client.who_am_i()
    admin.revoke_tokens()
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda _: client.who_am_i(), range(24)))
    assert all(answer["UserId"] for answer in answers)
    assert admin.routes()["token"] == {"200": 2}


def test_revoked_managed_identity_token_is_replaced(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, admin: SimulatorAdmin
) -> None:
    client = mi_client(sim, monkeypatch)
    client.who_am_i()
    admin.revoke_tokens()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: client.who_am_i(), range(16)))
    assert all(answer["UserId"] for answer in answers)
    counted = admin.routes()
    assert counted["mi_token"] == {"200": 2} and "token" not in counted


def test_a_second_401_is_an_authentication_error(sim: Simulator, admin: SimulatorAdmin) -> None:
    admin.configure(token_lifetime=0)  # every token is expired when issued
    client = msal_client(sim)
    with pytest.raises(D365AuthenticationError) as raised:
        client.who_am_i()
    assert raised.value.status == 401 and str(raised.value).startswith("authentication failed")
    assert admin.routes()["whoami"] == {"401": 2}
