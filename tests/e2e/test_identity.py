"""Secrets and identity end to end: Key Vault through the managed-identity endpoint, rotation
without a restart, secretless managed-identity mode, configuration errors, and no secret leaks."""

from __future__ import annotations

from collections.abc import Callable

import requests

from devstack.simulator import DEFAULT_IDENTITY_HEADER, Simulator, SimulatorAdmin
from tests.e2e.conftest import Stack


def identity_env(sim_url: str) -> dict[str, str]:
    return {"IDENTITY_ENDPOINT": f"{sim_url}/msi/token", "IDENTITY_HEADER": DEFAULT_IDENTITY_HEADER}


def test_secret_from_key_vault_survives_rotation_without_restart(
    start_stack: Callable[..., Stack], sim: Simulator
) -> None:
    canary = "CANARY-7f3a9c-secret-value"
    # Tokens that live 60 s are never served from MSAL's cache (it renews 5 minutes early), so
    # every push asks Entra ID and must present the current secret.
    admin = SimulatorAdmin(sim.base_url)
    admin.configure(token_lifetime=60)
    admin.rotate_secret(new_secret=canary)
    stack = start_stack(
        HUNTER_D365_CLIENT_SECRET="",
        HUNTER_KEYVAULT_URL=sim.base_url,
        HUNTER_D365_CLIENT_SECRET_NAME=sim.secret_name,
        **identity_env(sim.base_url),
    )
    first = stack.push({"domain": "before-rotation.example"})
    stack.wait_status("before-rotation.example", "synced")
    stack.admin.rotate_secret()  # the canary is revoked; Key Vault holds the new secret
    second = stack.push({"domain": "after-rotation.example"})
    state = stack.wait_status("after-rotation.example", "synced", "error", timeout=40)
    assert state["status"] == "synced", state
    assert stack.events("d365_secret_refreshed")
    assert len(stack.admin.leads()) == 2
    results = [m.content for m in stack.queue(stack.env["HUNTER_D365_RESULTS_QUEUE"]).peek_messages(max_messages=32)]
    seen = (
        "".join(stack.raw_logs)
        + first.text
        + second.text
        + "".join(results)
        + str(stack.status("after-rotation.example"))
    )
    assert canary not in seen


def test_managed_identity_mode_needs_no_secret(start_stack: Callable[..., Stack], sim: Simulator) -> None:
    stack = start_stack(
        HUNTER_D365_AUTH_MODE="managed_identity",
        HUNTER_D365_CLIENT_SECRET="",
        HUNTER_D365_CLIENT_ID="",
        HUNTER_D365_TENANT_ID="",
        **identity_env(sim.base_url),
    )
    ready = requests.get(f"{stack.url}/api/healthz/ready", timeout=30).json()
    assert ready["checks"]["auth_mode"] == "managed_identity" and ready["checks"]["dataverse_auth"] == "ok"
    stack.push({"domain": "secretless.example"})
    assert stack.wait_status("secretless.example", "synced")["last_outcome"] == "created"
    counters = stack.admin.routes()
    assert "token" not in counters and counters["mi_token"]


def test_unresolved_key_vault_reference_and_missing_setting_are_named(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_CLIENT_SECRET="@Microsoft.KeyVault(VaultName=v;SecretName=s)")
    response = stack.push({"domain": "x.example"})
    assert response.status_code == 503
    assert response.json()["message"].startswith("HUNTER_D365_CLIENT_SECRET: holds an unresolved Key Vault reference")
    assert "VaultName" not in response.text
    missing = start_stack(HUNTER_D365_BASE_URL="")
    body = requests.get(f"{missing.url}/api/healthz/ready", timeout=30).json()
    assert body["checks"]["settings"].startswith("error: HUNTER_D365_BASE_URL: required")


def test_storage_is_reached_by_managed_identity_as_in_azure(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    assert "AzureWebJobsStorage" not in stack.env
    assert stack.env["AzureWebJobsStorage__credential"] == "managedidentity"
    stack.push({"domain": "by-identity.example"})
    assert stack.wait_status("by-identity.example", "synced")["last_outcome"] == "created"
    # Every storage call of the app and the host carried a token from the managed-identity endpoint
    # (Azurite in OAuth mode refuses anything else: tests/integration/test_storage_identity.py).
    assert stack.admin.routes()["mi_token"].get("200")
