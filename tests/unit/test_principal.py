"""Authorization from the principal App Service Authentication injects (shared/principal.py)."""

from __future__ import annotations

import base64
import json

from devstack.simulator.directory import API_APP_ROLES, TEST_USERS, Directory
from shared.principal import PUSH, READ, REPLAY, Principal, Refusal, authorize, parse_principal

ROLE_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
ON = {"WEBSITE_AUTH_ENABLED": "True"}


def header(claims: list[tuple[str, str]], role_typ: str = ROLE_TYPE) -> str:
    body = {
        "auth_typ": "aad",
        "claims": [{"typ": t, "val": v} for t, v in claims],
        "name_typ": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
        "role_typ": role_typ,
    }
    return base64.b64encode(json.dumps(body).encode()).decode()


def test_roles_are_read_from_the_roles_claim_and_from_role_typ() -> None:
    encoded = header([("roles", PUSH), (ROLE_TYPE, REPLAY), ("preferred_username", "pia@hunter.example")])
    principal = parse_principal(encoded)
    assert principal.roles == {PUSH, REPLAY} and principal.name == "pia@hunter.example"


def test_the_role_lets_the_caller_through() -> None:
    caller = authorize({"x-ms-client-principal": header([("roles", PUSH)])}, PUSH, ON)
    assert isinstance(caller, Principal)


def test_without_the_role_403_names_it_and_the_caller() -> None:
    refusal = authorize({"x-ms-client-principal": header([("preferred_username", "vic@hunter.example")])}, PUSH, ON)
    assert isinstance(refusal, Refusal) and refusal.status == 403
    assert PUSH in refusal.message and "vic@hunter.example" in refusal.message


def test_no_principal_or_a_broken_one_is_401() -> None:
    assert isinstance(none := authorize({}, PUSH, ON), Refusal) and none.status == 401
    broken = authorize({"x-ms-client-principal": "%%%"}, PUSH, ON)
    assert isinstance(broken, Refusal) and broken.status == 401


def test_the_header_is_not_trusted_when_the_platform_has_authentication_off() -> None:
    refusal = authorize({"x-ms-client-principal": header([("roles", PUSH)])}, PUSH, {})
    assert isinstance(refusal, Refusal) and refusal.code == "authentication_not_configured"


def test_the_status_route_takes_the_read_role_or_the_push_role() -> None:
    for roles in ([READ], [PUSH], [READ, REPLAY]):
        assert isinstance(
            authorize({"x-ms-client-principal": header([("roles", r) for r in roles])}, (READ, PUSH), ON), Principal
        )
    refusal = authorize({"x-ms-client-principal": header([("roles", REPLAY), ("name", "op")])}, (READ, PUSH), ON)
    assert isinstance(refusal, Refusal) and refusal.status == 403
    assert "'Leads.Read' or 'Leads.Push'" in refusal.message


def test_every_role_the_simulator_assigns_is_declared_and_checked_by_the_app() -> None:
    # Entra ID assigns only the roles an app registration declares; the app checks exactly those.
    assert set(API_APP_ROLES) == {READ, PUSH, REPLAY}
    assigned = {role for user in TEST_USERS for role in user.roles}
    assigned |= {role for roles in Directory("t").app_roles.values() for role in roles}
    assert assigned <= set(API_APP_ROLES)
