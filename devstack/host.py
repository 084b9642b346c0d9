"""A local Azure Functions host for this app, for machines without Core Tools.

It loads `function_app.app` the way the Python worker indexes it (one `FunctionApp`,
`get_functions()` once, the binding JSON each function declares), then:

- serves every HTTP trigger on http://127.0.0.1:7071 under host.json's `routePrefix` (`api`),
  with `{name}` route parameters; function keys are not enforced, as with `func start`;
- runs every queue trigger against the storage account its `connection` setting names, with
  host.json's `extensions.queues` semantics: `batchSize` messages per poll, more fetched when
  fewer than `newBatchThreshold` are in flight, polling backing off to `maxPollingInterval`
  when idle, `messageEncoding` base64 (a message that is not base64 goes straight to
  `<queue>-poison`), `visibilityTimeout` before a failed message is retried, and
  `maxDequeueCount` attempts before the message moves to `<queue>-poison`;
- resolves `%SETTING%` expressions from app settings, honours overrides such as
  `AzureFunctionsJobHost__extensions__queues__maxDequeueCount`, and skips a function whose
  `AzureWebJobs.<name>.Disabled` setting is true.

Settings come from the environment, then `local.settings.json` `Values` (as `func start` reads them).
Run: `python -m devstack.host [--port 7071] [--settings local.settings.json]`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.processes import wait_for_signal

logger = logging.getLogger("devstack.host")
ROOT = Path(__file__).resolve().parent.parent
HOST_DEFAULTS = {
    "batchSize": 16,
    "newBatchThreshold": 8,
    "maxPollingInterval": 2000,
    "visibilityTimeout": 0,
    "maxDequeueCount": 5,
    "messageEncoding": "base64",
}
# How long a fetched message stays invisible while its function runs (the real host uses 10 min
# and renews it; a crash therefore makes the message reappear after this long).
LEASE_SECONDS = int(os.environ.get("LOCAL_HOST_MESSAGE_LEASE_SECONDS", "600"))


def timespan_ms(value: Any) -> int:
    """host.json durations: "hh:mm:ss[.fff]" or a number of milliseconds."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?", text)
    if not match:
        raise ValueError(f"not a timespan: {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds)
    return total * 1000 + int(((fraction or "0") + "000")[:3])


def load_settings(path: Path | None) -> None:
    """Put `local.settings.json` Values into the environment (existing variables win)."""
    if path is None or not path.exists():
        return
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def queue_options(host_json: dict[str, Any]) -> dict[str, Any]:
    """host.json `extensions.queues`, defaults filled in, app-setting overrides applied."""
    options: dict[str, Any] = dict(HOST_DEFAULTS)
    options.update(host_json.get("extensions", {}).get("queues", {}))
    for name in HOST_DEFAULTS:
        override = os.environ.get(f"AzureFunctionsJobHost__extensions__queues__{name}")
        if override is not None:
            options[name] = override
    for name in ("maxPollingInterval", "visibilityTimeout"):
        options[name] = timespan_ms(options[name])
    for name in ("batchSize", "newBatchThreshold", "maxDequeueCount"):
        options[name] = int(options[name])
    return options


def resolve(expression: str) -> str:
    """`%SETTING%` → the setting's value.

    Raises:
        KeyError: the setting is not defined (the real host refuses to start too).
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(f"app setting '{name}' is not defined")
        return os.environ[name]

    return re.sub(r"%([^%]+)%", lookup, expression)


@dataclass
class HttpRoute:
    name: str
    methods: set[str]
    pattern: re.Pattern[str]
    function: Any
    arg_name: str


def compile_route(prefix: str, route: str) -> re.Pattern[str]:
    """A route template (`v1/leads/{domain}`) as a regex with named groups."""
    path = "/" + "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)
    regex = re.sub(r"\\\{(\w+)(?::[^}]*)?\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return re.compile(f"^{regex}/?$", re.IGNORECASE)


class FunctionHost:
    """Indexes the app and runs its triggers."""

    def __init__(self, module: str = "function_app", host_json: Path = ROOT / "host.json") -> None:
        self.host_json = json.loads(host_json.read_text()) if host_json.exists() else {}
        self.options = queue_options(self.host_json)
        prefix = self.host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        app_module = importlib.import_module(module)
        apps = [value for value in vars(app_module).values() if type(value).__name__ == "FunctionApp"]
        if len(apps) != 1:
            raise RuntimeError(f"{module} must define exactly one FunctionApp (found {len(apps)})")
        self.routes: list[HttpRoute] = []
        self.queue_triggers: list[tuple[str, Any, dict[str, Any]]] = []
        for function in apps[0].get_functions():
            spec = json.loads(function.get_function_json())
            trigger = next(b for b in spec["bindings"] if b["direction"] == "IN" and b["type"].endswith("Trigger"))
            user_function = function.get_user_function()
            if os.environ.get(f"AzureWebJobs.{function.get_function_name()}.Disabled", "").lower() in ("1", "true"):
                logger.info("host_function_disabled", extra={"function": function.get_function_name()})
                continue
            if trigger["type"] == "httpTrigger":
                self.routes.append(
                    HttpRoute(
                        function.get_function_name(),
                        {m.upper() for m in trigger.get("methods") or ["GET", "POST"]},
                        compile_route(prefix, trigger.get("route") or function.get_function_name()),
                        user_function,
                        trigger["name"],
                    )
                )
            elif trigger["type"] == "queueTrigger":
                self.queue_triggers.append((function.get_function_name(), user_function, trigger))
            else:
                logger.warning("host_unsupported_trigger", extra={"function": function.get_function_name()})
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: ThreadingHTTPServer | None = None

    # -- HTTP ----------------------------------------------------------------------------------

    def handle_http(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes, base: str
    ) -> tuple[int, dict[str, str], bytes]:
        import azure.functions as func

        url = urlsplit(raw_path)
        path = unquote(url.path)
        allowed = False
        for route in self.routes:
            match = route.pattern.match(path)
            if not match:
                continue
            allowed = True
            if method not in route.methods:
                continue
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            request = func.HttpRequest(
                method=method,
                url=f"{base}{raw_path}",
                headers=headers,
                params=params,
                route_params=match.groupdict(),
                body=body,
            )
            try:
                response = route.function(**{route.arg_name: request})
            except Exception:
                logger.exception("host_function_failed", extra={"function": route.name})
                return 500, {"Content-Type": "text/plain"}, b"Internal Server Error"
            out_headers = dict(response.headers)
            out_headers.setdefault("Content-Type", response.mimetype or "text/plain")
            return response.status_code, out_headers, response.get_body() or b""
        if allowed:
            return 405, {"Content-Type": "text/plain"}, b"Method Not Allowed"
        return 404, {"Content-Type": "text/plain"}, b"Not Found"

    def serve_http(self, port: int) -> int:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("host_http %s", format % args)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                base = f"http://{self.headers.get('Host') or f'127.0.0.1:{port}'}"
                status, headers, payload = host.handle_http(
                    self.command, self.path, dict(self.headers.items()), body, base
                )
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._http = server
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        self._threads.append(thread)
        return int(server.server_address[1])

    # -- queues --------------------------------------------------------------------------------

    def start_queues(self) -> None:
        for name, function, trigger in self.queue_triggers:
            thread = threading.Thread(
                target=self._listen, args=(name, function, trigger), name=f"queue-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _listen(self, name: str, function: Any, trigger: dict[str, Any]) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.queue import QueueClient

        queue_name = resolve(trigger["queueName"])
        connection = os.environ[trigger.get("connection") or "AzureWebJobsStorage"]
        queue = QueueClient.from_connection_string(connection, queue_name, api_version="2021-12-02")
        poison = QueueClient.from_connection_string(connection, f"{queue_name}-poison", api_version="2021-12-02")
        for client in (queue, poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
        opts = self.options
        workers = opts["batchSize"] + opts["newBatchThreshold"]
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fn-{name}")
        # In flight never exceeds batchSize + newBatchThreshold: a batch is fetched only when at
        # most newBatchThreshold messages are still running.
        fetch = min(opts["batchSize"], 32)
        busy = [0]
        lock = threading.Lock()
        delay = 0.1
        logger.info("host_queue_listening", extra={"function": name, "queue": queue_name, "concurrency": workers})
        while not self._stop.is_set():
            with lock:
                saturated = busy[0] > opts["newBatchThreshold"]
            if saturated:
                time.sleep(0.02)
                continue
            try:
                batch = list(
                    queue.receive_messages(
                        messages_per_page=fetch,
                        max_messages=fetch,
                        visibility_timeout=LEASE_SECONDS,
                    )
                )
            except AzureError as exc:
                logger.warning("host_queue_poll_failed", extra={"queue": queue_name, "error_code": type(exc).__name__})
                self._stop.wait(2)
                continue
            if not batch:
                self._stop.wait(delay)
                delay = min(delay * 2, opts["maxPollingInterval"] / 1000)
                continue
            delay = 0.1
            for message in batch:
                with lock:
                    busy[0] += 1

                def run(message: Any = message) -> None:
                    try:
                        self._invoke(name, function, trigger, queue, poison, message)
                    finally:
                        with lock:
                            busy[0] -= 1

                pool.submit(run)
        pool.shutdown(wait=True)

    def _invoke(self, name: str, function: Any, trigger: dict[str, Any], queue: Any, poison: Any, message: Any) -> None:
        from azure.functions.queue import QueueMessage

        opts = self.options
        content = message.content
        if opts["messageEncoding"] == "base64":
            try:
                body = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                logger.error("host_message_not_base64", extra={"function": name, "message_id": message.id})
                self._to_poison(queue, poison, message)
                return
        else:
            body = content.encode("utf-8")
        if message.dequeue_count > opts["maxDequeueCount"]:
            self._to_poison(queue, poison, message)
            return
        msg = QueueMessage(
            id=message.id,
            body=body,
            pop_receipt=message.pop_receipt,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
        )
        try:
            function(**{trigger["name"]: msg})
        except Exception:
            logger.exception(
                "host_function_failed",
                extra={"function": name, "message_id": message.id, "dequeue_count": message.dequeue_count},
            )
            if message.dequeue_count >= opts["maxDequeueCount"]:
                self._to_poison(queue, poison, message)
            else:
                queue.update_message(message, visibility_timeout=opts["visibilityTimeout"] // 1000)
            return
        queue.delete_message(message)

    @staticmethod
    def _to_poison(queue: Any, poison: Any, message: Any) -> None:
        poison.send_message(message.content)
        queue.delete_message(message)
        logger.warning(
            "host_message_poisoned", extra={"message_id": message.id, "dequeue_count": message.dequeue_count}
        )

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
        for thread in self._threads:
            thread.join(timeout=30)


class JsonLines(logging.Formatter):
    """One JSON object per log record: time, level, logger, event, and the `extra` fields."""

    _SKIP = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Azure Functions host for function_app.py")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FUNCTIONS_HTTPWORKER_PORT", "7071")))
    parser.add_argument("--settings", default="local.settings.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    load_settings(Path(args.settings))
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), handlers=[handler], force=True)
    for noisy in ("azure", "urllib3", "msal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    host = FunctionHost()
    port = host.serve_http(args.port)
    host.start_queues()
    print(
        json.dumps(
            {
                "event": "host_started",
                "url": f"http://127.0.0.1:{port}",
                "http": [f"{sorted(r.methods)} {r.pattern.pattern}" for r in host.routes],
                "queues": [resolve(t["queueName"]) for _, _, t in host.queue_triggers],
            }
        ),
        flush=True,
    )
    wait_for_signal()
    host.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
