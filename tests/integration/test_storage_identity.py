"""Storage by identity, as in Azure: Azurite runs over HTTPS in OAuth mode and accepts the tokens
the simulated managed-identity endpoint issues for https://storage.azure.com, and refuses a request
without a valid one, so the identity path of the app and the host is really exercised (what Azurite
checks is listed on `devstack.processes.AzuriteTls`)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.storage.queue import QueueServiceClient

from devstack.simulator import Simulator, SimulatorAdmin
from tests.conftest import Azurite

STORAGE = "https://storage.azure.com"


@pytest.fixture
def identity(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> ManagedIdentityCredential:
    """The app's credential: the App Service managed-identity endpoint of the simulator."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
    return ManagedIdentityCredential(client_id=sim.mi_client_id)


def list_queues(azurite: Azurite, authorization: str | None) -> requests.Response:
    """List Queues (GET ?comp=list) on Azurite, with `authorization` as the header if given."""
    headers = {"x-ms-version": "2021-12-02", "x-ms-date": format_datetime(datetime.now(UTC), usegmt=True)}
    if authorization is not None:
        headers["Authorization"] = authorization
    url = azurite.identity_settings["AzureWebJobsStorage__queueServiceUri"]
    return requests.get(url, params={"comp": "list"}, headers=headers, timeout=10)


def test_the_managed_identity_reaches_queues_and_tables(
    azurite: Azurite, identity: ManagedIdentityCredential, admin: SimulatorAdmin, names: dict[str, str]
) -> None:
    settings = azurite.identity_settings
    queues = QueueServiceClient(settings["AzureWebJobsStorage__queueServiceUri"], credential=identity)
    queue = queues.create_queue(names["HUNTER_D365_QUEUE"])
    queue.send_message("by identity")
    assert [m.content for m in queue.receive_messages()] == ["by identity"]
    tables = TableServiceClient(settings["AzureWebJobsStorage__tableServiceUri"], credential=identity)
    table = tables.create_table_if_not_exists(names["HUNTER_D365_STATE_TABLE"])
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
    assert table.get_entity("p", "r")["v"] == 1
    assert admin.routes()["mi_token"] == {"200": 1}  # one storage token, cached by azure-identity


def test_azurite_refuses_a_request_without_a_valid_token(
    azurite: Azurite, sim: Simulator, admin: SimulatorAdmin
) -> None:
    valid, _ = sim.issue_token(STORAGE, sim.mi_client_id, version="1.0")
    assert list_queues(azurite, f"Bearer {valid}").status_code == 200
    anonymous = list_queues(azurite, None)
    assert anonymous.status_code == 403 and "<Code>AuthenticationFailed</Code>" in anonymous.text
    # (Authorization header, Azurite's AuthenticationErrorDetail)
    refused = {
        "not a JWT": ("Bearer not-a-token", "Authentication scheme Bearer is not supported."),
        "another audience (Dataverse)": (
            f"Bearer {sim.issue_token(sim.base_url, sim.mi_client_id, version='1.0')[0]}",
            "Invalid token audience.",
        ),
        "an issuer that is not Entra ID's": (
            f"Bearer {sim.issue_token(STORAGE, sim.mi_client_id, version='2.0')[0]}",
            "Invalid token issuer.",
        ),
    }
    admin.configure(token_lifetime=-60)
    refused["expired"] = (
        f"Bearer {sim.issue_token(STORAGE, sim.mi_client_id, version='1.0')[0]}",
        "Lifetime validation failed. The token is expired.",
    )
    for what, (authorization, detail) in refused.items():
        response = list_queues(azurite, authorization)
        # Azure Storage's answer to a bad credential: 403 AuthenticationFailed, with the reason.
        assert response.status_code == 403, (what, response.text)
        assert "<Code>AuthenticationFailed</Code>" in response.text, what
        assert f"<AuthenticationErrorDetail>{detail}</AuthenticationErrorDetail>" in response.text, what
