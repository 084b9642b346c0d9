"""Microsoft's own clients, unmodified, against the simulator. If one fails, the simulator is wrong."""

from __future__ import annotations

import msal
import pytest
import requests

from devstack.simulator import DEFAULT_IDENTITY_HEADER, DEFAULT_SECRET, Simulator, SimulatorAdmin


def msal_app(sim: Simulator, secret: str) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        sim.client_id,
        client_credential=secret,
        authority=f"{sim.base_url}/{sim.tenant_id}",
        instance_discovery=False,
    )


def test_msal_client_credentials_and_cache(sim: Simulator, admin: SimulatorAdmin) -> None:
    app = msal_app(sim, DEFAULT_SECRET)
    first = app.acquire_token_for_client([f"{sim.base_url}/.default"])
    second = app.acquire_token_for_client([f"{sim.base_url}/.default"])
    assert first["token_type"] == "Bearer" and first["expires_in"] > 3000
    assert first["token_source"] == "identity_provider" and second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert admin.routes()["token"] == {"200": 1}


def test_msal_wrong_secret_is_invalid_client(sim: Simulator) -> None:
    result = msal_app(sim, "wrong").acquire_token_for_client([f"{sim.base_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")


def test_managed_identity_credential(sim: Simulator, monkeypatch: pytest.MonkeyPatch, admin: SimulatorAdmin) -> None:
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", DEFAULT_IDENTITY_HEADER)
    credential = ManagedIdentityCredential()
    token = credential.get_token(f"{sim.base_url}/.default")
    assert token.expires_on > 0
    who = requests.get(
        f"{sim.base_url}/api/data/v9.2/WhoAmI", headers={"Authorization": f"Bearer {token.token}"}, timeout=10
    )
    assert who.status_code == 200 and who.json()["UserId"]
    credential.get_token(f"{sim.base_url}/.default")
    assert admin.routes()["mi_token"] == {"200": 1}  # azure-identity cached the second one


def test_managed_identity_with_wrong_header_is_refused(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential().get_token(f"{sim.base_url}/.default")


def test_key_vault_secret_client_through_the_challenge(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, admin: SimulatorAdmin
) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.identity import ManagedIdentityCredential
    from azure.keyvault.secrets import SecretClient

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", DEFAULT_IDENTITY_HEADER)
    client = SecretClient(sim.base_url, ManagedIdentityCredential(), verify_challenge_resource=False)
    assert client.get_secret(sim.secret_name).value == DEFAULT_SECRET
    assert admin.routes()["keyvault"] == {"401": 1, "200": 1}
    with pytest.raises(ResourceNotFoundError):
        client.get_secret("no-such-secret")


def test_dataverse_sdk_creates_and_retrieves_a_lead(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, admin: SimulatorAdmin
) -> None:
    from azure.identity import ManagedIdentityCredential
    from PowerPlatform.Dataverse.client import DataverseClient

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", DEFAULT_IDENTITY_HEADER)
    with DataverseClient(sim.base_url, ManagedIdentityCredential()) as client:
        lead_id = client.records.create(
            "lead", {"subject": "From the SDK", "hnt_domain": "sdk.example", "leadsourcecode": 8}
        )
        record = client.records.retrieve("lead", lead_id, select=["leadid", "subject", "hnt_domain"])
        found = client.records.list("lead", filter="hnt_domain eq 'sdk.example'", select=["leadid"], top=1).first()
    assert record is not None and record["subject"] == "From the SDK"
    assert found is not None and found["leadid"] == lead_id
    stored = admin.leads()
    assert [lead["leadid"] for lead in stored] == [lead_id]


def test_dataverse_sdk_creates_a_list_with_create_multiple(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch, admin: SimulatorAdmin
) -> None:
    """`records.create(table, [dicts])` is how a script would push leads in bulk with Microsoft's
    SDK: one CreateMultiple, ids back in order; a refused call raises the SDK's HttpError with the
    status, Dataverse's code and Retry-After."""
    from azure.identity import ManagedIdentityCredential
    from PowerPlatform.Dataverse.client import DataverseClient
    from PowerPlatform.Dataverse.core.errors import HttpError

    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", DEFAULT_IDENTITY_HEADER)
    records = [{"subject": f"SDK {i}", "hnt_domain": f"sdk-{i}.example", "leadsourcecode": 8} for i in range(3)]
    with DataverseClient(sim.base_url, ManagedIdentityCredential()) as client:
        ids = client.records.create("lead", records)
        found = client.records.list(
            "lead",
            filter="Microsoft.Dynamics.CRM.In(PropertyName='hnt_domain',PropertyValues=['sdk-0.example','sdk-2.example'])",
            select=["leadid", "hnt_domain"],
        )
        listed = {row["hnt_domain"]: row["leadid"] for row in found}
        admin.set_limits(max_requests=1, window_seconds=60)
        with pytest.raises(HttpError) as raised:
            for n in range(2):  # the window holds one request: the second is refused
                client.records.create("lead", [{"subject": "limited", "hnt_domain": f"sdk-limit-{n}.example"}])
    stored = {lead["leadid"]: lead["hnt_domain"] for lead in admin.leads()}
    assert [stored[i] for i in ids] == [r["hnt_domain"] for r in records]
    assert listed == {"sdk-0.example": ids[0], "sdk-2.example": ids[2]}
    assert admin.routes()["lead_create_multiple"] == {"200": 2, "429": 1}
    assert raised.value.status_code == 429
    assert raised.value.details["service_error_code"] == "0x80072322" and raised.value.details["retry_after"] >= 1
