"""The simulator's HTTPS server: a local CA and certificate made by `trustme`, one threaded
server on loopback, and the dispatch of each request to the module of the service it imitates."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack import localca
from devstack.processes import wait_for_signal
from devstack.simulator import admin, dataverse, devicecode, entra, identity, keyvault, leadpage, signin
from devstack.simulator.persist import LeadKeeper
from devstack.simulator.state import DEFAULT_SECRET, SimulatorState
from devstack.simulator.wire import Request, Response, json_response

Handler = Callable[[SimulatorState, Request], Response]


class Simulator(SimulatorState):
    """The simulated services and their state, served over HTTPS: `start()` serves them on a
    background thread (also as a context manager). The state lives in `state.SimulatorState`; the
    serving lives here, beside the dispatch to every service module, so that no service module
    imports the server back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop: Callable[[], None] | None = None

    def start(self) -> Simulator:
        """Make certificates, bind, and serve on a daemon thread. Returns self."""
        self.port, self._stop = serve(self)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._stop is not None:
            self._stop()
            self._stop = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tls_context(sim: SimulatorState) -> ssl.SSLContext:
    """A server context with a new certificate for 127.0.0.1/localhost from the kept local CA in
    `sim.ca_dir` (devstack/localca.py: what `make trust` makes a browser trust), or from a new CA
    when there is none; writes the CA, a bundle of the system CAs plus it (for
    REQUESTS_CA_BUNDLE), and a certificate and key for Azurite from the same CA, to the state
    directory."""
    import certifi
    import trustme

    sim.state_dir.mkdir(parents=True, exist_ok=True)
    ca = localca.load_or_create(sim.ca_dir) if sim.ca_dir is not None else trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    ca.cert_pem.write_to_path(str(sim.ca_path))
    # A second leaf from the same CA for Azurite's HTTPS (`--cert`/`--key`): its OAuth mode refuses
    # bearer tokens over plain HTTP, and clients trust it through the same bundle.
    storage_cert = ca.issue_cert("127.0.0.1", "localhost")
    storage_cert.cert_chain_pems[0].write_to_path(str(sim.storage_cert_path))
    storage_cert.private_key_pem.write_to_path(str(sim.storage_key_path))
    sim.storage_key_path.chmod(0o600)
    system = Path(certifi.where()).read_bytes()
    sim.bundle_path.write_bytes(system.rstrip(b"\n") + b"\n" + ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    return context


def serve(sim: Simulator) -> tuple[int, Callable[[], None]]:
    """Serve `sim` over HTTPS on a daemon thread; returns (the bound port, a function that stops it)."""
    context = tls_context(sim)
    server = _Server((sim.host, sim.port), _Handler)
    server.simulator = sim
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="simulator", daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return int(server.server_address[1]), stop


def route(path: str) -> tuple[str, Handler]:
    """(counter name, handler) of a request outside Dataverse."""
    if path.startswith("/_admin"):
        return "admin", admin.handle
    if path.startswith("/msi/token"):
        return "mi_token", identity.token
    if path.startswith("/secrets/"):
        return "keyvault", keyvault.get_secret
    if path.endswith("/oauth2/v2.0/token"):
        return "token", entra.token
    if path.endswith("/oauth2/v2.0/devicecode"):
        return "devicecode", devicecode.start
    if path == "/devicelogin":
        return "devicelogin", devicecode.page
    if path.endswith("/oauth2/v2.0/authorize"):
        return "authorize", signin.authorize
    if path.endswith("/oauth2/v2.0/logout"):
        return "logout", signin.logout
    if path.endswith("/discovery/v2.0/keys"):
        return "jwks", signin.jwks
    if path.endswith("/.well-known/openid-configuration"):
        return "discovery", entra.discovery
    if path == "/main.aspx":
        return "record_page", leadpage.handle
    return "unknown", _not_found


def _not_found(sim: SimulatorState, request: Request) -> Response:
    return json_response(404, {"error": {"code": "NotFound", "message": "no such route"}})


def dispatch(sim: Simulator, request: Request) -> Response:
    """Answer `request`: Dataverse requests through `dataverse.serve` (token, limits, faults), the
    others with their faults (admin routes have none), counted."""
    if request.path.startswith(dataverse.API_PREFIX):
        return dataverse.serve(sim, request)
    if request.method == "OPTIONS" and request.path.endswith("/oauth2/v2.0/token"):
        return signin.preflight(sim, request)
    name, handler = route(request.path)
    fault = sim.take_fault(name) if name != "admin" else None
    if fault and fault.latency_ms:
        time.sleep(fault.latency_ms / 1000)
    response = dataverse.fault_response(sim, fault) if fault and fault.status else handler(sim, request)
    sim.count(name, response.status)
    return response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    simulator: Simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Dropped and reset connections are part of the fault catalogue; stay quiet about them.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if os.environ.get("SIM_VERBOSE"):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=unquote(url.path),
            query={k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()},
            body=self.rfile.read(length) if length else b"",
            headers=self.headers,
        )
        response = dispatch(self.server.simulator, request)
        if response.drop:
            self._drop()
        else:
            self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.headers.get("x-ms-client-request-id"):
            self.send_header("x-ms-client-request-id", self.headers["x-ms-client-request-id"])
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Dataverse / Entra ID / Key Vault / managed identity simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "8443")))
    parser.add_argument("--state-dir", default=os.environ.get("SIM_STATE_DIR", ".devstack"))
    parser.add_argument("--client-secret", default=os.environ.get("SIM_CLIENT_SECRET", DEFAULT_SECRET))
    parser.add_argument(
        "--ca-dir",
        default=str(localca.ca_dir()),
        help="the kept local CA (default: this user's, see devstack/localca.py; `make trust` trusts it)",
    )
    args = parser.parse_args(argv)
    sim = Simulator(
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        client_secret=args.client_secret,
        ca_dir=args.ca_dir,
    )
    sim.state_dir.mkdir(parents=True, exist_ok=True)
    keeper = LeadKeeper(sim)
    kept = keeper.load()  # the leads of the last run (persist.py): they outlive a restart, as Azurite's data does
    sim.start()
    keeper.start()
    info = sim.info() | {"leads_kept": kept}
    (Path(args.state_dir) / "simulator.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    wait_for_signal()
    keeper.stop()
    sim.stop()
    return 0
