"""The smoke-test command against the simulator: passes with the right secret, fails clearly with
a wrong one, and never prints a secret."""

from __future__ import annotations

import io

import pytest

from devstack.simulator import DEFAULT_SECRET, Simulator, SimulatorAdmin
from shared.smoketest import run


def env_for(sim: Simulator, **overrides: str) -> dict[str, str]:
    return {
        "HUNTER_D365_BASE_URL": sim.base_url,
        "HUNTER_D365_AUTHORITY_HOST": sim.base_url,
        "HUNTER_D365_TENANT_ID": sim.tenant_id,
        "HUNTER_D365_CLIENT_ID": sim.client_id,
        "HUNTER_D365_CLIENT_SECRET": DEFAULT_SECRET,
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        **overrides,
    }


def test_smoketest_passes_and_pushes_a_test_lead(sim: Simulator, admin: SimulatorAdmin) -> None:
    out = io.StringIO()
    assert run(env_for(sim), push_test_lead=True, out=out)
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["PASS", "settings"],
        ["PASS", "token"],
        ["PASS", "whoami"],
        ["PASS", "test"],
    ]
    [lead] = admin.leads()
    assert lead["leadid"] in lines[-1] and lead["hnt_domain"].endswith(".hunter-smoke.invalid")
    assert DEFAULT_SECRET not in out.getvalue()


@pytest.mark.parametrize(
    ("overrides", "failing", "says"),
    [
        ({"HUNTER_D365_CLIENT_SECRET": "wrong-smoke-secret"}, "token", "AADSTS7000215"),
        ({"HUNTER_D365_BASE_URL": ""}, "settings", "HUNTER_D365_BASE_URL"),
        (
            {"HUNTER_D365_CLIENT_SECRET": "@Microsoft.KeyVault(VaultName=v;SecretName=s)"},
            "settings",
            "unresolved Key Vault reference",
        ),
    ],
)
def test_smoketest_fails_clearly(
    sim: Simulator, overrides: dict[str, str], failing: str, says: str, admin: SimulatorAdmin
) -> None:
    out = io.StringIO()
    assert not run(env_for(sim, **overrides), out=out)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith(f"FAIL  {failing}") and says in last
    assert "wrong-smoke-secret" not in out.getvalue()
    assert not admin.leads()
