"""An HTTPS simulator of Dataverse (Web API v9.2, `leads`), Entra ID, Key Vault and the App Service
managed-identity endpoint, for local runs and tests. One process, one port, on loopback.

It speaks the wire protocol of `../shared/reference/dataverse-wire.md` so that Microsoft's own
clients (MSAL, azure-identity, azure-keyvault-secrets, PowerPlatform-Dataverse-Client) work
against it unmodified. Its certificate comes from a local CA made by `trustme` at start-up; the
CA and a bundle of the system CAs plus it are written to the state directory, for
`REQUESTS_CA_BUNDLE`.

Routes (all on https://127.0.0.1:<port>):

    GET  /{tenant}/v2.0/.well-known/openid-configuration     Entra ID discovery
    POST /{tenant}/oauth2/v2.0/token                          client credentials
    GET  /msi/token?api-version=2019-08-01&resource=…          managed identity (X-IDENTITY-HEADER)
    GET  /secrets/{name}[/{version}]                          Key Vault (401 challenge first)
    *    /api/data/v9.2/…                                     Dataverse: leads, WhoAmI, EntityDefinitions
    *    /_admin/…                                            faults, limits, rotation, inspection

The admin API (JSON, no auth; loopback test tooling):

    GET    /_admin/leads                 all leads            DELETE /_admin/leads/{id}
    POST   /_admin/leads                 seed a lead          GET    /_admin/counters
    POST   /_admin/faults                {route, status, times, retry_after, latency_ms, drop_after_commit}
    DELETE /_admin/faults                clear faults         POST   /_admin/limits {max_requests,
    POST   /_admin/rotate-secret         new client secret       window_seconds, max_concurrent}
    PUT    /_admin/secrets/{name}        {value}              POST   /_admin/config {alternate_key,
    POST   /_admin/reset                 forget everything       token_lifetime, latency_ms}
    GET    /_admin/info                  URLs, ids, CA paths (no secrets)
    GET    /_admin/requests              the last 500 requests: route, status, x-ms-client-request-id

Run alone: `python -m devstack.simulator [--port 8443] [--state-dir .devstack]`.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.odata import FilterSyntaxError, UnknownColumn, parse_filter
from devstack.processes import wait_for_signal

DEFAULT_TENANT = "7d1f2c3a-0b4e-4c59-9a6d-2f1e3b4c5d6e"
DEFAULT_CLIENT_ID = "3c8e4b1a-5d2f-4e6a-8b7c-9d0e1f2a3b4c"
DEFAULT_SECRET = "local-sim-secret-change-me"
DEFAULT_MI_CLIENT_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
DEFAULT_IDENTITY_HEADER = "local-identity-header"
DEFAULT_SECRET_NAME = "d365-client-secret"
VAULT_RESOURCE = "https://vault.azure.net"
API_PREFIX = "/api/data/v9.2/"

# The lead columns the simulator knows: name → (type, max length for strings).
LEAD_COLUMNS: dict[str, tuple[type, int]] = {
    "subject": (str, 300),
    "lastname": (str, 50),
    "firstname": (str, 50),
    "fullname": (str, 160),
    "companyname": (str, 100),
    "websiteurl": (str, 200),
    "emailaddress1": (str, 100),
    "telephone1": (str, 50),
    "address1_city": (str, 80),
    "address1_country": (str, 80),
    "description": (str, 2000),
    "leadsourcecode": (int, 0),
    "leadqualitycode": (int, 0),
    "hnt_finalscore": (int, 0),
    "hnt_segment": (str, 100),
    "hnt_priority": (int, 0),
    "hnt_domain": (str, 255),
}
READ_ONLY = {"leadid", "createdon", "modifiedon", "versionnumber"}
ALL_COLUMNS = set(LEAD_COLUMNS) | READ_ONLY
KEY_COLUMN = "hnt_domain"
KEY_FORBIDDEN = set("/<>*%&:\\?")
PICKLISTS = {
    "leadsourcecode": [(1, "Advertisement"), (2, "Employee Referral"), (8, "Web"), (10, "Other")],
    "leadqualitycode": [(1, "Hot"), (2, "Warm"), (3, "Cold")],
}
_GUID = r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}"


def _now() -> float:
    return time.time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Fault:
    """An injected failure for `route` ("*" for every Dataverse route)."""

    route: str
    status: int = 0
    times: int = 1
    retry_after: float | None = None
    latency_ms: float = 0.0
    drop_after_commit: bool = False
    code: str = ""


@dataclass
class Limits:
    """Service-protection limits (per simulator, as Dataverse has them per user and server)."""

    max_requests: int = 0  # 0: off
    window_seconds: float = 300.0
    max_concurrent: int = 0  # 0: off
    concurrent_retry_after: float = 1.0


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    body = json.dumps(data).encode("utf-8")
    return Response(status, body, {"Content-Type": "application/json; odata.metadata=minimal", **(headers or {})})


def odata_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """Dataverse's error shape."""
    return json_response(status, {"error": {"code": code, "message": message}}, headers)


class Simulator:
    """The simulated services and their state. `start()` serves them on a background thread."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str] = ".devstack",
        host: str = "127.0.0.1",
        port: int = 0,
        tenant_id: str = DEFAULT_TENANT,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_SECRET,
        mi_client_id: str = DEFAULT_MI_CLIENT_ID,
        identity_header: str = DEFAULT_IDENTITY_HEADER,
        secret_name: str = DEFAULT_SECRET_NAME,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.mi_client_id = mi_client_id
        self.identity_header = identity_header
        self.secret_name = secret_name
        self._lock = threading.RLock()
        self._signing_key = secrets.token_bytes(32)
        self._initial_secret = client_secret
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_path = self.state_dir / "sim-ca.pem"
        self.bundle_path = self.state_dir / "ca-bundle.pem"
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget leads, faults, limits, counters; restore the initial secret and config."""
        with self._lock:
            self.leads: dict[str, dict[str, Any]] = {}
            self.client_secrets: dict[str, list[str]] = {self.client_id: [self._initial_secret]}
            self.app_users = {self.client_id, self.mi_client_id}
            self.vault: dict[str, list[tuple[str, str]]] = {
                self.secret_name: [(uuid.uuid4().hex, self._initial_secret)]
            }
            self.faults: list[Fault] = []
            self.limits = Limits()
            self.alternate_key = True
            self.token_lifetime = 3599
            self.issued_tokens: set[str] = set()
            self.revoked_tokens: set[str] = set()
            self.latency_ms = 0.0
            self.counters: collections.Counter[tuple[str, int]] = collections.Counter()
            self._window: collections.deque[float] = collections.deque()
            self._inflight = 0
            self.max_inflight_seen = 0
            self._version = 1000
            self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)

    @property
    def base_url(self) -> str:
        """The simulator's origin; it is also the Dataverse org URL."""
        return f"https://{self.host}:{self.port}"

    def info(self) -> dict[str, Any]:
        """What a client needs to reach the simulator (no secrets)."""
        return {
            "base_url": self.base_url,
            "dataverse_url": self.base_url,
            "api_url": f"{self.base_url}/api/data/v9.2",
            "authority_host": self.base_url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "keyvault_url": self.base_url,
            "secret_name": self.secret_name,
            "identity_endpoint": f"{self.base_url}/msi/token",
            "managed_identity_client_id": self.mi_client_id,
            "ca_path": str(self.ca_path.resolve()),
            "ca_bundle": str(self.bundle_path.resolve()),
            "admin_url": f"{self.base_url}/_admin",
            "pid": os.getpid(),
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def _certificates(self) -> ssl.SSLContext:
        import certifi
        import trustme

        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(self.ca_path))
        system = Path(certifi.where()).read_bytes()
        self.bundle_path.write_bytes(system.rstrip(b"\n") + b"\n" + ca.cert_pem.bytes())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        return context

    def start(self) -> Simulator:
        """Make certificates, bind, and serve on a daemon thread. Returns self."""
        context = self._certificates()
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tokens --------------------------------------------------------------------------------

    def issue_token(self, audience: str, appid: str) -> tuple[str, int]:
        """A signed JWT for `audience`; returns (token, expires_on epoch)."""
        now = int(_now())
        expires = now + int(self.token_lifetime)
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "aud": audience.rstrip("/"),
            "iss": f"{self.base_url}/{self.tenant_id}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": expires,
            "appid": appid,
            "tid": self.tenant_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, appid)),
            # Entra ID access tokens carry `uti`, a unique token id; the simulator uses it to
            # revoke tokens it has issued (see `revoke_tokens`).
            "uti": secrets.token_urlsafe(16),
        }
        with self._lock:
            self.issued_tokens.add(str(claims["uti"]))
        payload = _b64(json.dumps(claims).encode())
        signature = hmac.new(self._signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}", expires

    def verify_token(self, authorization: str | None, audience: str) -> dict[str, Any] | None:
        """The token's claims if `authorization` holds a valid, unexpired token for `audience`."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        parts = authorization[7:].strip().split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self._signing_key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_b64(expected), parts[2]):
            return None
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        if claims.get("exp", 0) <= _now() or claims.get("aud") != audience.rstrip("/"):
            return None
        with self._lock:
            if claims.get("uti") in self.revoked_tokens:
                return None
        return claims

    def revoke_tokens(self) -> int:
        """Make every token issued so far invalid before its expiry (as a revoked session, an
        application user disabled and enabled again, or a rotated secret does in Dataverse):
        resources then answer 401. Returns how many tokens were revoked."""
        with self._lock:
            fresh = self.issued_tokens - self.revoked_tokens
            self.revoked_tokens |= fresh
            return len(fresh)

    # -- faults and limits ---------------------------------------------------------------------

    def take_fault(self, route: str) -> Fault | None:
        """The first matching fault (its count is used up), or None."""
        with self._lock:
            for fault in self.faults:
                if fault.route in (route, "*") and fault.times != 0:
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def admit(self) -> Response | None:
        """Apply service-protection limits to one Dataverse request; a 429 when over a limit."""
        with self._lock:
            limits = self.limits
            now = _now()
            if limits.max_concurrent and self._inflight >= limits.max_concurrent:
                return odata_error(
                    429,
                    "0x80072326",
                    f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                    {"Retry-After": _seconds(limits.concurrent_retry_after)},
                )
            if limits.max_requests:
                while self._window and self._window[0] <= now - limits.window_seconds:
                    self._window.popleft()
                if len(self._window) >= limits.max_requests:
                    wait = self._window[0] + limits.window_seconds - now
                    return odata_error(
                        429,
                        "0x80072322",
                        f"Number of requests exceeded the limit of {limits.max_requests} over time "
                        f"window of {limits.window_seconds:g} seconds.",
                        {"Retry-After": _seconds(wait)},
                    )
                self._window.append(now)
            self._inflight += 1
            self.max_inflight_seen = max(self.max_inflight_seen, self._inflight)
        return None

    def release(self) -> None:
        """One admitted Dataverse request has finished."""
        with self._lock:
            self._inflight -= 1

    def count(self, route: str, status: int, request_id: str | None = None) -> None:
        """Record one answered request (and, for the last 500, its client request id)."""
        with self._lock:
            self.counters[(route, status)] += 1
            if route != "admin":
                self.recent.append({"route": route, "status": status, "client_request_id": request_id, "at": _now()})

    def counters_json(self) -> dict[str, Any]:
        """Counters as `{route: {status: n}}` plus totals."""
        with self._lock:
            routes: dict[str, dict[str, int]] = {}
            for (route, status), n in self.counters.items():
                routes.setdefault(route, {})[str(status)] = n
            return {
                "routes": routes,
                "total": sum(self.counters.values()),
                "max_concurrent_seen": self.max_inflight_seen,
            }

    # -- leads ---------------------------------------------------------------------------------

    def store_lead(self, fields: dict[str, Any], lead_id: str | None = None) -> dict[str, Any]:
        """Insert a validated lead; returns the record."""
        with self._lock:
            self._version += 1
            now = _iso(_now())
            record = {column: fields.get(column) for column in LEAD_COLUMNS}
            record.update(fields)
            record["fullname"] = (
                " ".join(part for part in (record.get("firstname"), record.get("lastname")) if part) or None
            )
            new_id = lead_id or str(uuid.uuid4())
            record.update(
                leadid=new_id,
                createdon=now,
                modifiedon=now,
                versionnumber=self._version,
            )
            self.leads[new_id] = record
            return record

    def find_by_key(self, value: str) -> dict[str, Any] | None:
        """The lead whose alternate key (hnt_domain) equals `value`, case-insensitively."""
        wanted = value.casefold()
        with self._lock:
            for record in self.leads.values():
                if isinstance(record.get(KEY_COLUMN), str) and record[KEY_COLUMN].casefold() == wanted:
                    return record
        return None


def _seconds(value: float) -> str:
    return str(max(1, math.ceil(value)))


def validate_lead(body: Any) -> tuple[dict[str, Any] | None, Response | None]:
    """Check a create/upsert body the way Dataverse does: known columns, types, lengths."""
    if not isinstance(body, dict):
        return None, odata_error(
            400, "0x80048d19", "Error identified in Payload provided by the user for Entity :'leads'."
        )
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@"):
            continue
        column = LEAD_COLUMNS.get(name)
        if column is None:
            return None, odata_error(
                400, "0x0", f"Invalid property '{name}' was found in entity 'Microsoft.Dynamics.CRM.lead'."
            )
        kind, limit = column
        if value is not None and kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            return None, odata_error(
                400,
                "0x80048d19",
                f"Cannot convert the literal '{value}' to the expected type 'Edm.Int32'.",
            )
        if value is not None and kind is str and not isinstance(value, str):
            return None, odata_error(
                400, "0x80048d19", f"Cannot convert a primitive value to the expected type 'Edm.String' for '{name}'."
            )
        # Dataverse counts a string's length in UTF-16 code units (.NET String.Length, SQL nvarchar
        # byte-pairs): a character beyond U+FFFF counts 2. surrogatepass: a lone one counts 1.
        if kind is str and isinstance(value, str) and len(value.encode("utf-16-le", "surrogatepass")) // 2 > limit:
            return None, odata_error(
                400,
                "0x80044331",
                f"A validation error occurred. The length of the '{name}' attribute of the 'lead' "
                f"entity exceeded the maximum allowed length of '{limit}'.",
            )
        if name in PICKLISTS and value is not None and value not in {v for v, _ in PICKLISTS[name]}:
            return None, odata_error(400, "0x8004431a", f"{name} value {value} is not a valid option.")
        fields[name] = value
    return fields, None


def select(record: dict[str, Any], selected: str | None) -> dict[str, Any]:
    """A record as the Web API returns it, with `$select` applied."""
    columns = [c.strip().lower() for c in selected.split(",")] if selected else sorted(ALL_COLUMNS)
    out: dict[str, Any] = {"@odata.etag": f'W/"{record["versionnumber"]}"'}
    for column in columns:
        out[column] = record.get(column)
    out["leadid"] = record["leadid"]
    return out


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

    @property
    def sim(self) -> Simulator:
        return self.server.simulator

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

    # -- plumbing ------------------------------------------------------------------------------

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

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

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._body()
        route, handler = self._route(path)
        if route.startswith("lead") or route in ("whoami", "metadata"):
            self._dataverse(route, handler, path, query, body)
            return
        fault = self.sim.take_fault(route) if route != "admin" else None
        if fault and fault.latency_ms:
            time.sleep(fault.latency_ms / 1000)
        response = self._fault_response(fault) if fault and fault.status else handler(path, query, body)
        self.sim.count(route, response.status)
        self._send(response)

    def _route(self, path: str) -> tuple[str, Any]:
        if path.startswith("/_admin"):
            return "admin", self._admin
        if path.startswith(API_PREFIX):
            rest = path[len(API_PREFIX) :]
            return self._dataverse_route(rest)
        if path.startswith("/msi/token"):
            return "mi_token", self._mi_token
        if path.startswith("/secrets/"):
            return "keyvault", self._keyvault
        if path.endswith("/oauth2/v2.0/token"):
            return "token", self._token
        if path.endswith("/.well-known/openid-configuration"):
            return "discovery", self._discovery
        return "unknown", lambda *_: json_response(404, {"error": {"code": "NotFound", "message": "no such route"}})

    def _dataverse_route(self, rest: str) -> tuple[str, Any]:
        method = self.command
        if rest == "WhoAmI" or rest == "WhoAmI()":
            return "whoami", self._whoami
        if rest.startswith("EntityDefinitions"):
            return "metadata", self._metadata
        if rest == "leads":
            return ("lead_create", self._create) if method == "POST" else ("lead_query", self._query)
        if re.fullmatch(rf"leads\({_GUID}\)", rest):
            return ("lead_delete", self._delete) if method == "DELETE" else ("lead_get", self._get)
        if rest.startswith("leads(") and rest.endswith(")"):
            return ("lead_upsert", self._upsert) if method == "PATCH" else ("lead_key_get", self._key_get)
        return "lead_unknown", lambda *_: odata_error(
            404, "0x80060888", f"Resource not found for the segment '{rest}'."
        )

    def _fault_response(self, fault: Fault) -> Response:
        headers = {}
        if fault.retry_after is not None or fault.status == 429:
            headers["Retry-After"] = _seconds(fault.retry_after if fault.retry_after is not None else 1)
        if fault.status == 429:
            return odata_error(
                429,
                fault.code or "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                headers,
            )
        if fault.status == 401:
            return Response(401, b"", {"WWW-Authenticate": self._challenge()})
        messages = {500: "An unexpected error occurred.", 503: "The service is temporarily unavailable."}
        return odata_error(
            fault.status, fault.code or "0x80040216", messages.get(fault.status, "Injected fault."), headers
        )

    def _challenge(self) -> str:
        # Dataverse's answer to a missing, expired or revoked token: 401, empty body, and this
        # header (Microsoft Learn, "Use OAuth authentication with Microsoft Dataverse": discover
        # the authority from the WWW-Authenticate header's authorization_uri and resource_id).
        return (
            f"Bearer authorization_uri={self.sim.base_url}/{self.sim.tenant_id}/oauth2/authorize, "
            f"resource_id={self.sim.base_url}/"
        )

    # -- Dataverse -----------------------------------------------------------------------------

    def _dataverse(self, route: str, handler: Any, path: str, query: dict[str, str], body: bytes) -> None:
        sim = self.sim
        claims = sim.verify_token(self.headers.get("Authorization"), sim.base_url)
        if claims is None or claims.get("appid") not in sim.app_users:
            sim.count(route, 401)
            self._send(Response(401, b"", {"WWW-Authenticate": self._challenge()}))
            return
        refused = sim.admit()
        if refused is not None:
            sim.count(route, 429)
            self._send(refused)
            return
        try:
            fault = sim.take_fault(route)
            delay = sim.latency_ms + (fault.latency_ms if fault else 0.0)
            if delay:
                time.sleep(delay / 1000)
            if fault and fault.status:
                response = self._fault_response(fault)
            else:
                response = handler(path, query, body, claims)
                if fault and fault.drop_after_commit:
                    sim.count(route, 0, self.headers.get("x-ms-client-request-id"))
                    self._drop()
                    return
        finally:
            sim.release()
        sim.count(route, response.status, self.headers.get("x-ms-client-request-id"))
        self._send(response)

    def _whoami(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        return json_response(
            200,
            {
                "@odata.context": f"{self.sim.base_url}{API_PREFIX}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": str(uuid.uuid5(uuid.NAMESPACE_DNS, "bu." + self.sim.tenant_id)),
                "UserId": claims["oid"],
                "OrganizationId": str(uuid.uuid5(uuid.NAMESPACE_DNS, "org." + self.sim.tenant_id)),
            },
        )

    def _metadata(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        rest = path[len(API_PREFIX) :]
        if "PicklistAttributeMetadata" in rest:
            return json_response(
                200,
                {
                    "value": [
                        {
                            "LogicalName": name,
                            "MetadataId": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
                            "OptionSet": {
                                "Options": [
                                    {
                                        "Value": value,
                                        "Label": {
                                            "LocalizedLabels": [{"Label": label, "LanguageCode": 1033}],
                                            "UserLocalizedLabel": {"Label": label, "LanguageCode": 1033},
                                        },
                                    }
                                    for value, label in options
                                ]
                            },
                        }
                        for name, options in PICKLISTS.items()
                    ]
                },
            )
        wanted = re.search(r"LogicalName eq '([^']*)'", query.get("$filter", "")) or re.search(
            r"LogicalName='([^']*)'", rest
        )
        lead = {
            "LogicalName": "lead",
            "EntitySetName": "leads",
            "PrimaryIdAttribute": "leadid",
            "PrimaryNameAttribute": "fullname",
            "ObjectTypeCode": 4,
            "MetadataId": "e3fe4ff2-a630-49bb-a1e9-debc3a076815",
        }
        rows = [lead] if wanted and wanted.group(1).lower() == "lead" else []
        return json_response(
            200, {"@odata.context": f"{self.sim.base_url}{API_PREFIX}$metadata#EntityDefinitions", "value": rows}
        )

    def _create(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return odata_error(
                400, "0x80048d19", "Error identified in Payload provided by the user for Entity :'leads'."
            )
        fields, error = validate_lead(data)
        if error is not None or fields is None:
            return error or odata_error(400, "0x0", "invalid body")
        with self.sim._lock:
            key = fields.get(KEY_COLUMN)
            if self.sim.alternate_key and isinstance(key, str) and self.sim.find_by_key(key):
                return odata_error(
                    412,
                    "0x80060892",
                    "A record that has the attribute values Domain already exists. "
                    "The entity key hnt_domainkey requires that this set of attributes contains unique values.",
                )
            record = self.sim.store_lead(fields)
        return self._created(record, query)

    def _created(self, record: dict[str, Any], query: dict[str, str], entity_url: str | None = None) -> Response:
        entity_id = entity_url or f"{self.sim.base_url}{API_PREFIX}leads({record['leadid']})"
        if "return=representation" in (self.headers.get("Prefer") or ""):
            data = select(record, query.get("$select"))
            data["@odata.context"] = f"{self.sim.base_url}{API_PREFIX}$metadata#leads/$entity"
            return json_response(
                201, data, {"OData-EntityId": entity_id, "Preference-Applied": "return=representation"}
            )
        return Response(204, b"", {"OData-EntityId": entity_id, "OData-Version": "4.0"})

    def _get(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        lead_id = path[len(API_PREFIX) + len("leads(") : -1].lower()
        record = self.sim.leads.get(lead_id)
        if record is None:
            return odata_error(404, "0x80040217", f"lead With Id = {lead_id} Does Not Exist")
        data = select(record, query.get("$select"))
        data["@odata.context"] = f"{self.sim.base_url}{API_PREFIX}$metadata#leads(leadid)/$entity"
        return json_response(200, data)

    def _delete(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        lead_id = path[len(API_PREFIX) + len("leads(") : -1].lower()
        with self.sim._lock:
            if self.sim.leads.pop(lead_id, None) is None:
                return odata_error(404, "0x80040217", f"lead With Id = {lead_id} Does Not Exist")
        return Response(204)

    def _query(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        text = query.get("$filter")
        try:
            predicate = parse_filter(text, ALL_COLUMNS) if text else (lambda record: True)
        except FilterSyntaxError as exc:
            return odata_error(400, "0x80060888", str(exc))
        except UnknownColumn as exc:
            return odata_error(
                400, "0x80060888", f"Could not find a property named '{exc}' on type 'Microsoft.Dynamics.CRM.lead'."
            )
        try:
            top = int(query.get("$top") or 5000)
        except ValueError:
            return odata_error(400, "0x80060888", "Invalid value for $top.")
        with self.sim._lock:
            rows = [select(r, query.get("$select")) for r in self.sim.leads.values() if predicate(r)]
        return json_response(
            200, {"@odata.context": f"{self.sim.base_url}{API_PREFIX}$metadata#leads(leadid)", "value": rows[:top]}
        )

    def _key(self, path: str) -> tuple[str | None, Response | None]:
        inner = path[len(API_PREFIX) + len("leads(") : -1]
        match = re.fullmatch(r"(\w+)='((?:[^']|'')*)'", inner)
        if not match:
            return None, odata_error(400, "0x80060888", f"Bad Request - Error in query syntax: leads({inner}).")
        if match.group(1).lower() != KEY_COLUMN or not self.sim.alternate_key:
            return None, odata_error(
                400, "0x80060888", f"The key '{match.group(1)}' is not defined as an alternate key for entity 'lead'."
            )
        value = match.group(2).replace("''", "'")
        if any(ch in KEY_FORBIDDEN for ch in value):
            return None, odata_error(400, "0x80060888", "Key values cannot contain / < > * % & : \\ ?")
        return value, None

    def _key_get(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        value, error = self._key(path)
        if error is not None or value is None:
            return error or odata_error(400, "0x0", "bad key")
        record = self.sim.find_by_key(value)
        if record is None:
            return odata_error(404, "0x80040217", f"lead With Id = {KEY_COLUMN}={value} Does Not Exist")
        data = select(record, query.get("$select"))
        return json_response(200, data)

    def _upsert(self, path: str, query: dict[str, str], body: bytes, claims: dict[str, Any]) -> Response:
        value, error = self._key(path)
        if error is not None or value is None:
            return error or odata_error(400, "0x0", "bad key")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            return odata_error(
                400, "0x80048d19", "Error identified in Payload provided by the user for Entity :'leads'."
            )
        fields, invalid = validate_lead(data)
        if invalid is not None or fields is None:
            return invalid or odata_error(400, "0x0", "invalid body")
        entity_url = f"{self.sim.base_url}{API_PREFIX}leads({KEY_COLUMN}='{value}')"
        with self.sim._lock:
            existing = self.sim.find_by_key(value)
            if existing is not None and self.headers.get("If-None-Match") == "*":
                return odata_error(412, "0x80040237", "A record with matching key values already exists.")
            if existing is None and self.headers.get("If-Match") == "*":
                return odata_error(404, "0x80040217", f"lead With Id = {KEY_COLUMN}={value} Does Not Exist")
            if existing is not None:
                existing.update(fields)
                self.sim._version += 1
                existing["versionnumber"] = self.sim._version
                if "return=representation" in (self.headers.get("Prefer") or ""):
                    return json_response(200, select(existing, query.get("$select")))
                return Response(204, b"", {"OData-EntityId": entity_url})
            record = self.sim.store_lead({**fields, KEY_COLUMN: fields.get(KEY_COLUMN, value)})
        return self._created(record, query, entity_url)

    # -- Entra ID ------------------------------------------------------------------------------

    def _discovery(self, path: str, query: dict[str, str], body: bytes) -> Response:
        tenant = path.strip("/").split("/")[0]
        base = f"{self.sim.base_url}/{tenant}"
        return json_response(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "EU",
            },
        )

    def _entra_error(self, status: int, error: str, aadsts: int, description: str) -> Response:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        trace = str(uuid.uuid4())
        return json_response(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace} Correlation ID: "
                f"{self.headers.get('client-request-id', str(uuid.uuid4()))} Timestamp: {now}",
                "error_codes": [aadsts],
                "timestamp": now,
                "trace_id": trace,
                "correlation_id": self.headers.get("client-request-id", str(uuid.uuid4())),
                "error_uri": f"{self.sim.base_url}/error?code={aadsts}",
            },
        )

    def _token(self, path: str, query: dict[str, str], body: bytes) -> Response:
        tenant = path.strip("/").split("/")[0]
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if tenant != self.sim.tenant_id:
            return self._entra_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return self._entra_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        if client_id not in self.sim.client_secrets:
            return self._entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if form.get("client_secret") not in self.sim.client_secrets[client_id]:
            return self._entra_error(
                401,
                "invalid_client",
                7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return self._entra_error(
                400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."
            )
        token, expires = self.sim.issue_token(scope[: -len("/.default")], client_id)
        return json_response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": expires - int(_now()),
                "ext_expires_in": expires - int(_now()),
                "access_token": token,
            },
        )

    # -- managed identity and Key Vault ----------------------------------------------------------

    def _mi_token(self, path: str, query: dict[str, str], body: bytes) -> Response:
        if self.headers.get("X-IDENTITY-HEADER") != self.sim.identity_header:
            return json_response(
                401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER missing or wrong."}
            )
        resource = query.get("resource", "")
        if not resource:
            return json_response(400, {"statusCode": 400, "message": "resource is required."})
        client_id = query.get("client_id") or self.sim.mi_client_id
        if client_id != self.sim.mi_client_id:
            return json_response(400, {"statusCode": 400, "message": f"Identity with client_id {client_id} not found."})
        resource = resource[: -len("/.default")] if resource.endswith("/.default") else resource
        token, expires = self.sim.issue_token(resource, client_id)
        return json_response(
            200,
            {
                "access_token": token,
                "expires_on": str(expires),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": client_id,
            },
        )

    def _keyvault(self, path: str, query: dict[str, str], body: bytes) -> Response:
        claims = self.sim.verify_token(self.headers.get("Authorization"), VAULT_RESOURCE)
        if claims is None:
            challenge = f'Bearer authorization="{self.sim.base_url}/{self.sim.tenant_id}", resource="{VAULT_RESOURCE}"'
            return json_response(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                {"WWW-Authenticate": challenge},
            )
        parts = path.strip("/").split("/")
        name = parts[1] if len(parts) > 1 else ""
        version = parts[2] if len(parts) > 2 else ""
        with self.sim._lock:
            versions = self.sim.vault.get(name, [])
            match = [v for v in versions if v[0] == version] if version else versions[-1:]
        if not match:
            return json_response(
                404,
                {
                    "error": {
                        "code": "SecretNotFound",
                        "message": f"A secret with (name/id) {name} was not found in this key vault.",
                    }
                },
            )
        version_id, value = match[0]
        now = int(_now())
        return json_response(
            200,
            {
                "value": value,
                "id": f"{self.sim.base_url}/secrets/{name}/{version_id}",
                "attributes": {
                    "enabled": True,
                    "created": now,
                    "updated": now,
                    "recoveryLevel": "Recoverable+Purgeable",
                },
                "tags": {},
            },
        )

    # -- admin ---------------------------------------------------------------------------------

    def _admin(self, path: str, query: dict[str, str], body: bytes) -> Response:
        sim = self.sim
        method = self.command
        parts = path.strip("/").split("/")[1:]
        data: Any = json.loads(body) if body else {}
        resource = parts[0] if parts else ""
        if resource == "info":
            return json_response(200, sim.info())
        if resource == "reset" and method == "POST":
            sim.reset()
            return json_response(200, {"reset": True})
        if resource == "counters":
            return json_response(200, sim.counters_json())
        if resource == "requests":
            with sim._lock:
                return json_response(200, {"value": list(sim.recent)})
        if resource == "leads":
            return self._admin_leads(method, parts, data)
        if resource == "faults":
            with sim._lock:
                if method == "DELETE":
                    sim.faults.clear()
                elif method == "POST":
                    sim.faults.append(Fault(**data))
                return json_response(200, {"faults": [f.__dict__ for f in sim.faults]})
        if resource == "limits" and method == "POST":
            with sim._lock:
                sim.limits = Limits(**data)
                sim._window.clear()
            return json_response(200, sim.limits.__dict__)
        if resource == "config" and method == "POST":
            with sim._lock:
                sim.alternate_key = bool(data.get("alternate_key", sim.alternate_key))
                sim.token_lifetime = int(data.get("token_lifetime", sim.token_lifetime))
                sim.latency_ms = float(data.get("latency_ms", sim.latency_ms))
            return json_response(
                200,
                {
                    "alternate_key": sim.alternate_key,
                    "token_lifetime": sim.token_lifetime,
                    "latency_ms": sim.latency_ms,
                },
            )
        if resource == "tokens" and parts[1:] == ["revoke"] and method == "POST":
            return json_response(200, {"revoked": sim.revoke_tokens()})
        if resource == "rotate-secret" and method == "POST":
            return self._rotate(data)
        if resource == "secrets" and method == "PUT" and len(parts) == 2:
            with sim._lock:
                version = uuid.uuid4().hex
                sim.vault.setdefault(parts[1], []).append((version, str(data["value"])))
            return json_response(200, {"name": parts[1], "version": version})
        return json_response(404, {"error": "unknown admin route"})

    def _admin_leads(self, method: str, parts: list[str], data: Any) -> Response:
        sim = self.sim
        if method == "GET":
            with sim._lock:
                return json_response(200, {"value": list(sim.leads.values())})
        if method == "DELETE" and len(parts) == 2:
            with sim._lock:
                gone = sim.leads.pop(parts[1].lower(), None)
            return json_response(200 if gone else 404, {"deleted": bool(gone)})
        if method == "POST":
            fields, error = validate_lead(data)
            if error is not None or fields is None:
                return error or json_response(400, {})
            return json_response(201, sim.store_lead(fields))
        return json_response(405, {"error": "method not allowed"})

    def _rotate(self, data: dict[str, Any]) -> Response:
        sim = self.sim
        client_id = data.get("client_id", sim.client_id)
        new_secret = data.get("new_secret") or secrets.token_urlsafe(24)
        with sim._lock:
            sim.client_secrets[client_id] = [new_secret]  # the old secret is revoked
            version = uuid.uuid4().hex
            sim.vault.setdefault(data.get("secret_name", sim.secret_name), []).append((version, new_secret))
        return json_response(
            200, {"client_id": client_id, "secret_name": data.get("secret_name", sim.secret_name), "version": version}
        )


def main(argv: list[str] | None = None) -> int:
    """Run the simulator in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Dataverse / Entra ID / Key Vault / managed identity simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIM_PORT", "8443")))
    parser.add_argument("--state-dir", default=os.environ.get("SIM_STATE_DIR", ".devstack"))
    parser.add_argument("--client-secret", default=os.environ.get("SIM_CLIENT_SECRET", DEFAULT_SECRET))
    args = parser.parse_args(argv)
    sim = Simulator(state_dir=args.state_dir, host=args.host, port=args.port, client_secret=args.client_secret)
    sim.start()
    info = sim.info()
    info_path = Path(args.state_dir) / "simulator.json"
    info_path.write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    wait_for_signal()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
