"""The app on the local host: the rows of docs/local-host.md that the app can notice, App Service
Authentication and CORS among them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import requests

from devstack.simulator import Simulator
from devstack.simulator.directory import API_CLIENT_ID, BACKEND_CLIENT_ID, SPA_CLIENT_ID
from tests.e2e.conftest import DEMO_ORIGIN, Stack


def _principal(roles: list[str]) -> str:
    claims = [{"typ": "roles", "val": role} for role in roles]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


def test_push_without_a_valid_token_is_401_from_the_platform(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    url = f"{stack.url}/api/v1/d365/push-lead"
    response = requests.post(url, json={"domain": "notoken.example"}, timeout=30)
    assert response.status_code == 401 and response.content == b""
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    stranger = Simulator(state_dir=stack.sim.state_dir / "stranger")  # its own signing key, never started
    forged, _ = stranger.issue_token(API_CLIENT_ID, BACKEND_CLIENT_ID, extra={"roles": ["Leads.Push"]})
    expired, _ = stack.sim.issue_token(API_CLIENT_ID, BACKEND_CLIENT_ID, extra={"roles": ["Leads.Push"]}, lifetime=-600)
    other_audience, _ = stack.sim.issue_token("api://someone-else", BACKEND_CLIENT_ID, extra={"roles": ["Leads.Push"]})
    for token in (forged, expired, other_audience, "not-a-jwt"):
        refused = requests.post(
            url, json={"domain": "notoken.example"}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert refused.status_code == 401, token[:20]
    # A principal header from outside is removed by the platform: alone it authenticates nobody.
    sneaky = requests.post(
        url,
        json={"domain": "notoken.example"},
        headers={"X-MS-CLIENT-PRINCIPAL": _principal(["Leads.Push"])},
        timeout=30,
    )
    assert sneaky.status_code == 401
    assert stack.queue_length(stack.queue_name) == 0
    assert stack.events("host_auth_token_refused")


def test_a_caller_without_the_role_gets_403_naming_it(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    viewer, _ = stack.sim.issue_token(
        API_CLIENT_ID, SPA_CLIENT_ID, extra={"scp": "access_as_user", "preferred_username": "viewer@hunter.example"}
    )
    response = requests.post(
        f"{stack.url}/api/v1/d365/push-lead",
        json={"domain": "norole.example"},
        headers={"Authorization": f"Bearer {viewer}"},
        timeout=30,
    )
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "forbidden" and body["role"] == "Leads.Push" and "viewer@hunter.example" in body["message"]
    assert stack.queue_length(stack.queue_name) == 0
    never = stack.http.get(f"{stack.url}/api/v1/d365/leads/norole.example", timeout=30)
    assert never.status_code == 200 and never.json()["status"] == "not_synced"
    # The viewer without any role may not read statuses either; the 403 names the read role.
    status = requests.get(
        f"{stack.url}/api/v1/d365/leads/norole.example", headers={"Authorization": f"Bearer {viewer}"}, timeout=30
    )
    assert status.status_code == 403 and status.json()["role"] == "Leads.Read"


def test_the_read_role_reads_statuses_and_may_not_push(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    reader, _ = stack.sim.issue_token(
        API_CLIENT_ID,
        SPA_CLIENT_ID,
        extra={"scp": "access_as_user", "preferred_username": "viewer@hunter.example", "roles": ["Leads.Read"]},
    )
    headers = {"Authorization": f"Bearer {reader}"}
    status = requests.get(f"{stack.url}/api/v1/d365/leads/reader.example", headers=headers, timeout=30)
    assert status.status_code == 200 and status.json()["status"] == "not_synced"
    push = requests.post(
        f"{stack.url}/api/v1/d365/push-lead", json={"domain": "reader.example"}, headers=headers, timeout=30
    )
    assert push.status_code == 403 and push.json()["role"] == "Leads.Push"
    assert stack.queue_length(stack.queue_name) == 0


def test_replay_takes_the_replay_role_only_and_ignores_a_forged_principal(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    url = f"{stack.url}/api/v1/d365/poison/replay"
    refused = stack.http.post(url, headers={"X-MS-CLIENT-PRINCIPAL": _principal(["Leads.Replay"])}, timeout=30)
    assert refused.status_code == 403 and refused.json()["role"] == "Leads.Replay"
    allowed = requests.post(url, auth=stack.replay_auth, timeout=30)
    assert allowed.status_code == 200 and allowed.json() == {"replayed": 0, "invalid": 0}


def test_a_client_outside_allowed_applications_is_403_from_the_platform(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    outsider, _ = stack.sim.issue_token(
        API_CLIENT_ID, "0f0f0f0f-0000-4000-8000-000000000000", extra={"roles": ["Leads.Push"]}
    )
    response = requests.get(
        f"{stack.url}/api/v1/d365/leads/x.example", headers={"Authorization": f"Bearer {outsider}"}, timeout=30
    )
    assert response.status_code == 403 and b"permission" in response.content


def test_cors_allows_the_configured_origin_only(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    url = f"{stack.url}/api/v1/d365/push-lead"
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = requests.options(url, headers={"Origin": DEMO_ORIGIN, **ask}, timeout=10)
    assert allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == DEMO_ORIGIN
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"]
    other = requests.options(url, headers={"Origin": "https://evil.example", **ask}, timeout=10)
    assert other.status_code == 204 and "Access-Control-Allow-Origin" not in other.headers
    # The platform's 401 still carries the CORS answer, so the page can tell "sign in" from a network error.
    unauthenticated = requests.post(url, json={}, headers={"Origin": DEMO_ORIGIN}, timeout=10)
    assert unauthenticated.status_code == 401 and unauthenticated.headers["Access-Control-Allow-Origin"] == DEMO_ORIGIN


def test_health_probes_stay_anonymous_and_wrong_methods_are_404(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    assert requests.get(f"{stack.url}/api/healthz/live", timeout=10).status_code == 200
    assert requests.post(f"{stack.url}/api/healthz/live", timeout=10).status_code == 404
    assert requests.head(f"{stack.url}/api/healthz/live", timeout=10).status_code == 404
    assert stack.http.get(f"{stack.url}/api/v1/d365/push-lead", timeout=10).status_code == 404


def test_base64_with_line_breaks_is_a_valid_message(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    body = json.dumps({"schema_version": 1, "domain": "wrapped.example", "company_name": "Wrapped"}).encode()
    encoded = base64.encodebytes(body).decode()  # MIME style: a line break every 76 characters
    assert "\n" in encoded.strip()
    stack.queue(stack.queue_name, encode=False).send_message(encoded)
    stack.wait_status("wrapped.example", "synced")
    assert stack.queue_length(f"{stack.queue_name}-poison") == 0


def test_a_message_that_is_not_base64_is_poisoned_with_the_hosts_log_line(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    stack.queue(stack.queue_name, encode=False).send_message("not base64 at all!")
    poison = f"{stack.queue_name}-poison"
    stack.wait_for(lambda: stack.queue_length(poison) == 1, what="the message in poison")
    line = f"Message has reached MaxDequeueCount of 5. Moving message to queue '{poison}'."
    stack.wait_for(lambda: stack.events(line), what="the host's poison log line")


def test_non_utf8_message_is_rejected_once_by_the_app(start_stack: Callable[..., Stack]) -> None:
    # The trigger declares dataType binary, so the raw bytes reach the app (one rejection), not a
    # strict UTF-8 string binding that would fail five times before Python runs.
    stack = start_stack()
    stack.queue(stack.queue_name, encode=False).send_message(base64.b64encode(b"\xff\xfe{}").decode())
    poison = f"{stack.queue_name}-poison"
    stack.wait_for(lambda: stack.queue_length(poison) == 1, what="the message in poison")
    stack.wait_for(lambda: stack.events("d365_push_rejected"), what="the rejection")
    [rejected] = stack.events("d365_push_rejected")
    assert rejected["error_code"] == "invalid_encoding"
    assert not stack.events("host_function_failed")


def _raw_http(stack: Stack, request: bytes) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(request)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    return received


def test_a_chunked_body_is_read_and_a_negative_length_is_400(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    lead = json.dumps({"domain": "chunked-body.example"}).encode()
    head = (
        f"POST /api/v1/d365/push-lead HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {stack.app_auth.token()}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
    ).encode()
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(lead) + lead + b"\r\n0\r\n\r\n"
    answer = _raw_http(stack, chunked)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    stack.wait_status("chunked-body.example", "synced")
    negative = _raw_http(stack, head + b"Content-Length: -1\r\n\r\n" + lead)  # answered, not a hang
    assert negative.startswith(b"HTTP/1.1 400")
