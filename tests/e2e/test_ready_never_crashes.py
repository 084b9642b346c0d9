"""`/api/healthz/ready` never crashes: every dependency failure — a Dataverse sign-in host that does
not resolve (NameResolutionError, raised by MSAL while it reads the authority's OpenID
configuration), a sign-in port nobody listens on, storage down — is a 503 JSON naming the kind of
failure, not a 500 with an empty body."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from devstack.processes import free_port
from shared import http_api
from tests.e2e.conftest import Stack


@pytest.mark.parametrize(
    "authority",
    ["https://login.nowhere.invalid", "https://127.0.0.1:{closed}"],
    ids=["name-does-not-resolve", "port-closed"],
)
def test_ready_with_an_unreachable_dataverse_sign_in_is_503_unreachable(
    start_stack: Callable[..., Stack], authority: str
) -> None:
    stack = start_stack(HUNTER_D365_AUTHORITY_HOST=authority.format(closed=free_port()))
    ready = requests.get(f"{stack.url}/api/healthz/ready", timeout=60)
    assert ready.status_code == 503, ready.text
    assert ready.headers["Content-Type"].startswith("application/json")
    assert ready.json()["status"] == "not_ready"
    assert ready.json()["checks"]["dataverse_auth"] == "error: unreachable"
    assert ready.json()["checks"]["storage"] == "ok"
    assert "nowhere" not in ready.text  # the kind, not the host's text


def test_a_failure_nobody_foresaw_is_named_and_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def probe() -> None:
        raise RuntimeError("something odd")

    assert http_api._check("storage", probe) == "error: unexpected (RuntimeError)"
    assert [r.message for r in caplog.records] == ["healthz_check_failed"]
