"""The host: indexes the app, wires HTTP, queues and the worker pool, and runs until signalled."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack.host.easyauth import Cors, EasyAuth
from devstack.host.framing import BadRequest, read_body
from devstack.host.http import HttpFrontEnd, HttpRoute, compile_route
from devstack.host.keys import Keys
from devstack.host.queues import QueueListener
from devstack.host.settings import (
    HostConfigError,
    check_names,
    function_timeout_ms,
    load_settings,
    queue_options,
    thread_count,
)
from devstack.host.timers import TimerListener
from devstack.host.worker import Worker
from devstack.processes import wait_for_signal

logger = logging.getLogger("devstack.host")
ROOT = Path(__file__).resolve().parent.parent.parent


def _disabled(name: str) -> bool:
    # AzureWebJobs.<name>.Disabled (the host's FunctionMetadataManager / app setting docs).
    return os.environ.get(f"AzureWebJobs.{name}.Disabled", "").lower() in ("1", "true")


class FunctionHost:
    """Indexes the app and runs its triggers.

    Raises (from the constructor):
        HostConfigError: host.json, a setting, a function or binding name, or a queue name that
            the real host would refuse at startup.
    """

    def __init__(self, module: str = "function_app", host_json: Path = ROOT / "host.json") -> None:
        self.host_json: dict[str, Any] = json.loads(host_json.read_text()) if host_json.exists() else {}
        self.options = queue_options(self.host_json)
        self.worker = Worker(thread_count(), function_timeout_ms(self.host_json))
        prefix = self.host_json.get("extensions", {}).get("http", {}).get("routePrefix", "api")
        app_module = importlib.import_module(module)
        apps = [value for value in vars(app_module).values() if type(value).__name__ == "FunctionApp"]
        if len(apps) != 1:
            raise RuntimeError(f"{module} must define exactly one FunctionApp (found {len(apps)})")
        routes: list[HttpRoute] = []
        self.listeners: list[QueueListener] = []
        self.timers: list[TimerListener] = []
        names: list[str] = []
        for function in apps[0].get_functions():
            name = function.get_function_name()
            spec = json.loads(function.get_function_json())
            check_names(name, [b["name"] for b in spec["bindings"]])
            names.append(name)
            if _disabled(name):
                logger.info("host_function_disabled", extra={"function": name})
                continue
            trigger = next(b for b in spec["bindings"] if b["direction"] == "IN" and b["type"].endswith("Trigger"))
            user_function = function.get_user_function()
            if trigger["type"] == "httpTrigger":
                methods = trigger.get("methods")
                routes.append(
                    HttpRoute(
                        name,
                        {m.upper() for m in methods} if methods else None,
                        compile_route(prefix, trigger.get("route") or name),
                        user_function,
                        trigger["name"],
                        str(trigger.get("authLevel") or "FUNCTION").lower(),
                    )
                )
            elif trigger["type"] == "queueTrigger":
                self.listeners.append(QueueListener(name, user_function, trigger, self.options, self.worker))
            elif trigger["type"] == "timerTrigger":
                self._add_timer(name, user_function, trigger)
            else:
                logger.warning("host_unsupported_trigger", extra={"function": name})
        self.keys = Keys.from_settings(names)
        self.auth = EasyAuth.from_env()
        if self.auth is not None:
            # What the platform sets when App Service Authentication is on (azure-functions-host
            # EnvironmentExtensions.IsEasyAuthEnabled); the app trusts X-MS-CLIENT-PRINCIPAL only then.
            os.environ["WEBSITE_AUTH_ENABLED"] = "True"
        else:
            os.environ.pop("WEBSITE_AUTH_ENABLED", None)
        self.http = HttpFrontEnd(routes, self.keys, self.worker, self.auth, Cors.from_env())
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None

    def _add_timer(self, name: str, function: Any, trigger: dict[str, Any]) -> None:
        # A schedule that does not resolve or parse fails this function's indexing only: the host
        # disables it and runs the rest (WebJobs FunctionIndexer with AllowPartialHostStartup).
        try:
            self.timers.append(TimerListener(name, function, trigger, self.worker))
        except HostConfigError as exc:
            logger.error("host_function_indexing_failed", extra={"function": name, "error": str(exc)})
            logger.warning("Function '%s' failed indexing and will be disabled.", name, extra={"function": name})

    @property
    def routes(self) -> list[HttpRoute]:
        return self.http.routes

    def serve_http(self, port: int) -> int:
        front = self.http

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("host_http %s", format % args)

            def _handle(self) -> None:
                try:
                    body = read_body(self.command, list(self.headers.items()), self.rfile, self.request_version)
                except BadRequest as exc:
                    logger.info("host_bad_request", extra={"status": exc.status, "reason": str(exc)})
                    self.close_connection = True
                    self.send_response(exc.status)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                base = f"http://{self.headers.get('Host') or f'127.0.0.1:{port}'}"
                status, headers, payload = front.handle(self.command, self.path, list(self.headers.items()), body, base)
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        self._threads.append(thread)
        return int(server.server_address[1])

    def start_queues(self) -> None:
        for listener in self.listeners:
            thread = threading.Thread(
                target=listener.run, args=(self._stop,), name=f"queue-{listener.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def start_timers(self) -> None:
        for timer in self.timers:
            thread = threading.Thread(target=timer.run, args=(self._stop,), name=f"timer-{timer.name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=30)
        self.worker.shutdown()


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
    host.start_timers()
    started = json.dumps(
        {
            "event": "host_started",
            "url": f"http://127.0.0.1:{port}",
            "http": [f"{sorted(r.methods or ['*'])} {r.pattern.pattern} {r.auth_level}" for r in host.routes],
            "queues": [listener.queue_name for listener in host.listeners],
            "timers": {timer.name: str(timer.schedule) for timer in host.timers},
            "worker_threads": host.worker.size,
            "function_timeout_ms": None if host.worker.timeout is None else int(host.worker.timeout * 1000),
            # Which keys exist, never their values (the real host logs none either).
            "keys": sorted(host.keys.public()),
            "authentication": None
            if host.auth is None
            else {"issuer": host.auth.issuer, "audiences": host.auth.audiences},
            "cors": None if host.http.cors is None else host.http.cors.origins,
        }
    )
    # One write under the log handler's lock: a timer or listener thread logging at this moment
    # would otherwise land between the line and its newline (print writes them separately), and
    # whoever reads the log line by line would miss `host_started`.
    with handler.lock or contextlib.nullcontext():
        sys.stdout.write(started + "\n")
        sys.stdout.flush()
    wait_for_signal()
    host.stop()
    # The app's Storage round trips in this process (shared/storage.py), for the benchmarks' per-lead
    # figure; only when the app got as far as loading its storage module.
    from devstack.host import storage as host_storage

    app_storage = sys.modules.get("shared.storage")
    trips = {"host_storage_round_trips": host_storage.round_trips()}
    if app_storage is not None:
        trips["storage_round_trips"] = app_storage.round_trips()
    print(json.dumps({"event": "host_stopped", **trips}), flush=True)
    return 0
