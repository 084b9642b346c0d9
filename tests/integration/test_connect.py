"""`connect` against the simulator's org: an empty org becomes a connected one, a second run changes
nothing, a wrong role is corrected, a user without the rights is refused and told which, `--dry-run`
changes nothing, and the smoke test at the end pushes a lead with the key in force."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest

from devstack.simulator import DEFAULT_SECRET, Simulator
from devstack.simulator.org import ADMIN_OID, VIEWER_OID
from shared.connect import ADMIN_PRIVILEGES, APP_PRIVILEGES, ROLE_NAME, main

AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
CHANGING_ROUTES = ("create", "add", "remove", "assign")


def person(sim: Simulator, oid: str) -> Callable[[], str]:
    """A delegated Dataverse token of the test user `oid`, as azure-identity would fetch it."""
    return lambda: sim.issue_token(sim.base_url, AZURE_CLI_CLIENT_ID, extra={"oid": oid, "scp": "user_impersonation"})[
        0
    ]


def connect(sim: Simulator, *extra: str, oid: str = ADMIN_OID, smoke: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    args = ["--org", sim.base_url, "--application-id", sim.client_id, "--poll-seconds", "0.05"]
    args += ["--settings", "/nonexistent", *extra, *([] if smoke else ["--no-smoke"])]
    return main(args, token=person(sim, oid), out=out), out.getvalue()


@pytest.fixture
def empty(sim: Simulator) -> Simulator:
    """The simulator with a fresh org: no application users, Hunter role, columns or key."""
    sim.org.make_empty()
    sim.org.key_delays = (0.6, 0.6)
    return sim


def writes(sim: Simulator) -> int:
    """How many setup calls that change the org the simulator has answered."""
    routes = sim.counters_json()["routes"]
    return sum(
        n
        for name, statuses in routes.items()
        if name.startswith(("security_", "metadata_")) and any(word in name for word in CHANGING_ROUTES)
        for n in statuses.values()
    )


def assert_connected(sim: Simulator, depth: str = "Global") -> None:
    user = sim.org.application_user(sim.client_id)
    role = sim.org.role_named(ROLE_NAME)
    assert user is not None and role is not None
    assert role.roleid in user.roles and user.businessunitid == sim.org.root_bu
    assert role.privileges == dict.fromkeys(APP_PRIVILEGES, depth)
    assert {"hnt_domain", "hnt_segment", "hnt_finalscore", "hnt_priority"} <= sim.org.columns
    [key] = sim.org.keys.values()
    assert key.attributes == ["hnt_domain"] and sim.org.key_status(key) == "Active"


def test_an_empty_org_becomes_connected_and_shows_the_key_index_progress(empty: Simulator) -> None:
    status, out = connect(empty)
    assert status == 0, out
    assert_connected(empty)
    progress = [line.split()[-4] for line in out.splitlines() if "key index" in line]
    assert progress[-1] == "Active" and len(progress) >= 2  # Pending/InProgress first, then Active
    assert "change(s) made" in out


def test_a_second_run_changes_nothing(empty: Simulator) -> None:
    assert connect(empty)[0] == 0
    before = writes(empty)
    status, out = connect(empty)
    assert status == 0 and "0 change(s) made" in out, out
    assert writes(empty) == before
    assert_connected(empty)


def test_a_wrong_role_is_corrected(empty: Simulator) -> None:
    wrong = empty.org.add_role(
        ROLE_NAME, {"prvReadLead": "Basic", "prvDeleteLead": "Global", "prvCreateLead": "Global"}
    )
    status, out = connect(empty, "--depth", "Deep")
    assert status == 0, out
    assert empty.org.role_named(ROLE_NAME) is wrong  # corrected in place, not replaced
    assert_connected(empty, depth="Deep")
    assert "prvDeleteLead" in out and "prvReadLead Basic → Deep" in out


def test_a_user_without_the_rights_is_refused_and_told_which(empty: Simulator) -> None:
    status, out = connect(empty, oid=VIEWER_OID)
    assert status == 2
    [line] = [line for line in out.splitlines() if line.startswith("REFUSED")]
    assert all(name in line for name in ADMIN_PRIVILEGES)
    assert empty.org.application_user(empty.client_id) is None and not empty.org.columns


def test_dry_run_prints_the_plan_and_changes_nothing(empty: Simulator) -> None:
    status, out = connect(empty, "--dry-run")
    assert status == 0, out
    assert "would create" in out and "would assign" in out and "change(s) planned" in out
    assert writes(empty) == 0
    assert empty.org.application_user(empty.client_id) is None
    assert not empty.org.columns and not empty.org.keys and not empty.org.publishers


def test_the_app_cannot_reach_an_empty_org_and_can_after_connect(
    empty: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The smoke test at the end signs in as the app and pushes one lead through the new columns."""
    for name, value in {
        "HUNTER_D365_AUTHORITY_HOST": empty.base_url,
        "HUNTER_D365_TENANT_ID": empty.tenant_id,
        "HUNTER_D365_CLIENT_ID": empty.client_id,
        "HUNTER_D365_CLIENT_SECRET": DEFAULT_SECRET,
        "HUNTER_D365_AUTH_MODE": "client_secret",
        "HUNTER_D365_DOMAIN_KEY": "true",
    }.items():
        monkeypatch.setenv(name, value)
    status, out = connect(empty, smoke=True)
    assert status == 0, out
    assert "PASS  test lead" in out
    [lead] = [lead for lead in empty.leads() if lead["hnt_domain"]]
    assert lead["hnt_domain"].endswith(".hunter-smoke.invalid")
    assert empty.alternate_key  # the Active key is in force: a second lead with that domain is refused
    assert empty.create_lead({"hnt_domain": lead["hnt_domain"]}) is None
    assert DEFAULT_SECRET not in out


def test_a_failed_key_index_stops_with_what_to_do(empty: Simulator) -> None:
    empty.org.fail_next_key = True
    status, out = connect(empty)
    assert status == 1
    assert "FAIL  the key index is Failed" in out and "Keys" in out
    assert not empty.alternate_key  # never put in force
    status, out = connect(empty)  # a rerun reads the Failed index and says the same, changing nothing else
    assert status == 1 and "is Failed" in out


def test_an_administrator_signs_in_with_a_device_code_through_azure_identity(empty: Simulator) -> None:
    """The sign-in `connect` uses by default: azure-identity's DeviceCodeCredential (MSAL's device
    flow) against the simulated Entra ID; the person enters the code on the verification page."""
    import requests

    from shared.connect import admin_token

    def enter_code(verification_uri: str, user_code: str, expires_on: object) -> None:
        page = requests.post(
            verification_uri, data={"user_code": user_code, "username": "admin@hunter.example"}, timeout=10
        )
        assert page.status_code == 200 and "signed in" in page.text

    token = admin_token(
        empty.base_url, empty.tenant_id, "device-code", authority_host=empty.base_url, prompt=enter_code
    )
    out = io.StringIO()
    args = ["--org", empty.base_url, "--application-id", empty.client_id, "--poll-seconds", "0.05"]
    assert main([*args, "--settings", "/nonexistent", "--no-smoke"], token=token, out=out) == 0, out.getvalue()
    assert_connected(empty)
    assert not empty.org.device_codes  # redeemed once


def test_device_code_polling_waits_for_the_person(empty: Simulator) -> None:
    import requests

    base = f"{empty.base_url}/{empty.tenant_id}/oauth2/v2.0"
    flow = requests.post(
        f"{base}/devicecode", data={"client_id": AZURE_CLI_CLIENT_ID, "scope": f"{empty.base_url}/.default"}, timeout=10
    ).json()
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": AZURE_CLI_CLIENT_ID}
    pending = requests.post(f"{base}/token", data={**poll, "device_code": flow["device_code"]}, timeout=10)
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    wrong = requests.post(
        flow["verification_uri"], data={"user_code": "NOPE", "username": "admin@hunter.example"}, timeout=10
    )
    assert wrong.status_code == 400
