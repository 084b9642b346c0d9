"""The app on the local host: the rows of docs/local-host.md that the app can notice."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import requests

from tests.e2e.conftest import Stack


def test_push_without_a_key_is_401(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    response = requests.post(f"{stack.url}/api/v1/d365/push-lead", json={"domain": "nokey.example"}, timeout=30)
    assert response.status_code == 401 and response.content == b""
    wrong = requests.get(
        f"{stack.url}/api/v1/d365/leads/nokey.example", headers={"x-functions-key": "guess"}, timeout=30
    )
    assert wrong.status_code == 401
    assert stack.queue_length(stack.queue_name) == 0
    by_query = requests.get(f"{stack.url}/api/v1/d365/leads/nokey.example?code={stack.function_key}", timeout=30)
    assert by_query.status_code == 404 and by_query.json()["status"] == "not_synced"


def test_replay_refuses_a_function_key_and_takes_the_master_key(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack()
    refused = stack.http.post(f"{stack.url}/api/v1/d365/poison/replay", timeout=30)
    assert refused.status_code == 401
    allowed = stack.http.post(f"{stack.url}/api/v1/d365/poison/replay", headers=stack.master_headers, timeout=30)
    assert allowed.status_code == 200 and allowed.json() == {"replayed": 0, "invalid": 0}


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
        f"POST /api/v1/d365/push-lead HTTP/1.1\r\nHost: 127.0.0.1\r\nx-functions-key: {stack.function_key}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n"
    ).encode()
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(lead) + lead + b"\r\n0\r\n\r\n"
    answer = _raw_http(stack, chunked)
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    stack.wait_status("chunked-body.example", "synced")
    negative = _raw_http(stack, head + b"Content-Length: -1\r\n\r\n" + lead)  # answered, not a hang
    assert negative.startswith(b"HTTP/1.1 400")
