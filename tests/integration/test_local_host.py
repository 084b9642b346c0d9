"""The local Functions host against the real host's behaviour, row by row of docs/local-host.md.

HTTP, keys, settings and the worker pool are exercised in-process with small fake functions; the
queue rows run a real listener against Azurite. The end-to-end versions (the app on the host) are
in tests/e2e/test_local_host_e2e.py.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from devstack.host import queues as host_queues
from devstack.host.http import HttpFrontEnd, HttpRoute, compile_route, decode_path
from devstack.host.keys import Keys
from devstack.host.queues import QueueListener, decode_base64
from devstack.host.settings import (
    HostConfigError,
    function_timeout_ms,
    queue_name,
    queue_options,
    thread_count,
    timespan_ms,
)
from devstack.host.worker import InvocationFailed, Worker
from tests.conftest import Azurite

MASTER, HOST_KEY, OWN_KEY = "master-key", "host-function-key", "echo-only-key"


def echo(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        f"{req.route_params.get('value')}|{req.params.get('tag', '')}", status_code=200, mimetype="text/plain"
    )


def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("the function failed")


@pytest.fixture
def front() -> HttpFrontEnd:
    keys = Keys(MASTER, {"default": HOST_KEY}, {"echo": {"default": OWN_KEY}})
    routes = [
        HttpRoute("echo", {"GET"}, compile_route("api", "echo/{value}"), echo, "req", "function"),
        HttpRoute("other", {"GET"}, compile_route("api", "other"), echo, "req", "function"),
        HttpRoute("admin", {"POST"}, compile_route("api", "admin"), echo, "req", "admin"),
        HttpRoute("open", {"GET"}, compile_route("api", "open"), echo, "req", "anonymous"),
        HttpRoute("boom", {"GET"}, compile_route("api", "boom"), boom, "req", "anonymous"),
    ]
    return HttpFrontEnd(routes, keys, Worker(4, 5_000))


def call(front: HttpFrontEnd, method: str, path: str, key: str | None = None) -> tuple[int, bytes]:
    headers = [("x-functions-key", key)] if key else []
    status, _, body = front.handle(method, path, headers, b"", "http://127.0.0.1:7071")
    return status, body


# -- keys ----------------------------------------------------------------------------------------


def test_function_level_needs_a_key_401_empty_body(front: HttpFrontEnd) -> None:
    assert call(front, "GET", "/api/echo/x") == (401, b"")
    assert call(front, "GET", "/api/echo/x", "wrong")[0] == 401


def test_function_host_and_master_keys_each_open_a_function_route(front: HttpFrontEnd) -> None:
    for key in (HOST_KEY, OWN_KEY, MASTER):
        assert call(front, "GET", "/api/echo/x", key)[0] == 200


def test_a_function_key_opens_only_its_own_function(front: HttpFrontEnd) -> None:
    assert call(front, "GET", "/api/other", OWN_KEY)[0] == 401
    assert call(front, "GET", "/api/other", HOST_KEY)[0] == 200


def test_code_query_parameter_is_a_key_and_the_header_wins(front: HttpFrontEnd) -> None:
    assert call(front, "GET", f"/api/echo/x?code={HOST_KEY}")[0] == 200
    assert call(front, "GET", f"/api/echo/x?code={HOST_KEY}", "wrong")[0] == 401


def test_admin_level_refuses_function_keys_and_takes_the_master_key(front: HttpFrontEnd) -> None:
    assert call(front, "POST", "/api/admin", HOST_KEY)[0] == 401
    assert call(front, "POST", "/api/admin", OWN_KEY)[0] == 401
    assert call(front, "POST", "/api/admin", MASTER)[0] == 200


def test_anonymous_needs_no_key(front: HttpFrontEnd) -> None:
    assert call(front, "GET", "/api/open")[0] == 200


# -- routing and responses -----------------------------------------------------------------------


def test_wrong_method_is_404_not_405(front: HttpFrontEnd) -> None:
    assert call(front, "POST", "/api/open") == (404, b"")


def test_head_is_not_implied_by_get(front: HttpFrontEnd) -> None:
    assert call(front, "HEAD", "/api/open")[0] == 404


def test_a_raising_function_is_500_with_an_empty_body(front: HttpFrontEnd) -> None:
    assert call(front, "GET", "/api/boom") == (500, b"")


def test_percent_2f_stays_encoded_in_a_route_value(front: HttpFrontEnd) -> None:
    assert decode_path("/api/echo/a%2Fb%20c") == "/api/echo/a%2Fb c"
    assert call(front, "GET", "/api/echo/a%2Fb", HOST_KEY) == (200, b"a%2Fb|")
    assert call(front, "GET", "/api/echo/a/b", HOST_KEY)[0] == 404


def test_repeated_query_keys_are_joined_with_commas(front: HttpFrontEnd) -> None:
    assert call(front, "GET", "/api/echo/v?tag=a&tag=b", HOST_KEY) == (200, b"v|a,b")


# -- host.json and settings ----------------------------------------------------------------------


def test_batch_size_over_32_refuses_to_start() -> None:
    with pytest.raises(HostConfigError, match="batchSize"):
        queue_options({"extensions": {"queues": {"batchSize": 33}}})
    assert queue_options({"extensions": {"queues": {"batchSize": 32}}})["batchSize"] == 32


def test_new_batch_threshold_defaults_to_half_the_batch_times_cpus() -> None:
    assert queue_options({"extensions": {"queues": {"batchSize": 8}}}, cpus=2)["newBatchThreshold"] == 8


def test_timespans_parse_as_dotnet_does() -> None:
    assert timespan_ms("00:00:02") == 2000
    assert timespan_ms("00:00:00.200") == 200
    assert timespan_ms("1.00:00:00") == 86_400_000
    assert timespan_ms("5") == 5 * 86_400_000  # TimeSpan.Parse("5") is five days


def test_function_timeout_minimum_and_default() -> None:
    assert function_timeout_ms({"functionTimeout": "00:05:00"}) == 300_000
    assert function_timeout_ms({}) == 30 * 60_000
    with pytest.raises(HostConfigError):
        function_timeout_ms({"functionTimeout": "00:00:00.500"})


def test_queue_names_are_lower_cased_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("Q_SETTING", "Lead-Push")
    assert queue_name("%Q_SETTING%") == "lead-push"
    for bad in ("ab", "-lead", "lead--push", "lead_push"):
        with pytest.raises(HostConfigError):
            queue_name(bad)


def test_thread_pool_defaults_like_the_python_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON_THREADPOOL_THREAD_COUNT", raising=False)
    assert thread_count() is None
    assert Worker(thread_count(), None).size == min(32, (__import__("os").cpu_count() or 1) + 4)
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "16")
    assert Worker(thread_count(), None).size == 16
    monkeypatch.setenv("PYTHON_THREADPOOL_THREAD_COUNT", "0")
    assert thread_count() is None  # below 1: ignored with a warning by the worker


def test_base64_decoding_ignores_whitespace_like_dotnet() -> None:
    assert decode_base64("eyJh\r\nIjox fQ==\n") == b'{"a":1}'


# -- worker pool and functionTimeout -------------------------------------------------------------


def test_one_pool_serves_every_invocation() -> None:
    worker = Worker(2, None)
    running: list[int] = []
    peak = [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            running.append(1)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.2)
        with lock:
            running.pop()

    threads = [threading.Thread(target=worker.invoke, args=("f", work, {})) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] == 2


def test_function_timeout_fails_the_invocation_and_every_other_in_flight(caplog: pytest.LogCaptureFixture) -> None:
    worker = Worker(4, 1000)
    release = threading.Event()
    outcomes: dict[str, str] = {}

    def slow() -> str:
        release.wait(5)
        return "late"

    def run(name: str, delay: float) -> None:
        time.sleep(delay)
        try:
            outcomes[name] = worker.invoke(name, slow, {})
        except InvocationFailed as exc:
            outcomes[name] = f"failed: {exc}"

    with caplog.at_level(logging.WARNING, logger="devstack.host"):
        threads = [threading.Thread(target=run, args=("first", 0)), threading.Thread(target=run, args=("second", 0.3))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
    release.set()
    assert outcomes == {
        "first": "failed: Timeout value of functionTimeout exceeded",
        "second": "failed: worker restarted",
    }
    assert worker.restarts == 1
    assert "A function timeout has occurred. Restarting worker process" in caplog.text
    assert worker.invoke("after", lambda: "fresh", {}) == "fresh"


# -- queue rows against Azurite ------------------------------------------------------------------


@pytest.fixture
def storage(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    yield f"host-{uuid.uuid4().hex[:10]}"


def run_listener(
    queue: str, function: Any, data_type: str | None, seconds: float, **options: Any
) -> tuple[QueueListener, threading.Event, threading.Thread]:
    trigger: dict[str, Any] = {"name": "msg", "queueName": queue, "connection": "AzureWebJobsStorage"}
    if data_type:
        trigger["dataType"] = data_type
    opts = queue_options({"extensions": {"queues": {"maxPollingInterval": "00:00:00.200", **options}}})
    listener = QueueListener("fn", function, trigger, opts, Worker(4, None))
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    return listener, stop, thread


def raw(azurite: Azurite, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(azurite.connection_string, name, api_version="2021-12-02")
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def wait(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def depth(client: QueueClient) -> int:
    return int(client.get_queue_properties().approximate_message_count or 0)


def test_string_binding_fails_on_non_utf8_five_times_then_poison(
    azurite: Azurite, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[bytes] = []
    raw(azurite, storage).send_message(base64.b64encode(b"\xff\xfe not utf-8").decode())
    with caplog.at_level(logging.INFO, logger="devstack.host"):
        _, stop, thread = run_listener(storage, lambda msg: calls.append(msg.get_body()), None, 20)
        wait(lambda: depth(raw(azurite, f"{storage}-poison")) == 1)
        stop.set()
        thread.join(10)
    assert calls == []  # the binding failed every time: Python never ran
    failures = [r for r in caplog.records if r.getMessage() == "host_function_failed"]
    assert len(failures) == 5
    assert f"Message has reached MaxDequeueCount of 5. Moving message to queue '{storage}-poison'." in caplog.text


def test_binary_binding_hands_the_raw_bytes_over(azurite: Azurite, storage: str) -> None:
    calls: list[bytes] = []
    raw(azurite, storage).send_message(base64.b64encode(b"\xff\xfe not utf-8").decode())
    _, stop, thread = run_listener(storage, lambda msg: calls.append(msg.get_body()), "binary", 20)
    wait(lambda: calls and depth(raw(azurite, storage)) == 0)
    stop.set()
    thread.join(10)
    assert calls == [b"\xff\xfe not utf-8"]


def test_upper_case_queue_setting_listens_on_the_lower_case_queue(azurite: Azurite, storage: str) -> None:
    calls: list[bytes] = []
    raw(azurite, storage).send_message(base64.b64encode(b"hello").decode())
    _, stop, thread = run_listener(storage.upper(), lambda msg: calls.append(msg.get_body()), None, 20)
    wait(lambda: calls)
    stop.set()
    thread.join(10)
    assert calls == [b"hello"]


def test_a_long_invocation_keeps_its_message_invisible(
    azurite: Azurite, storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_queues, "LEASE_SECONDS", 2)  # 10 min in Azure; renewed at half
    calls: list[float] = []

    def slow(msg: func.QueueMessage) -> None:
        calls.append(time.monotonic())
        time.sleep(4)

    raw(azurite, storage).send_message(base64.b64encode(b"slow").decode())
    listener, stop, thread = run_listener(storage, slow, None, 20)
    wait(lambda: calls)
    time.sleep(4.5)
    wait(lambda: depth(raw(azurite, storage)) == 0)
    stop.set()
    thread.join(10)
    assert len(calls) == 1  # never redelivered while running
    assert listener.renewals >= 2
