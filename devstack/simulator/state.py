"""The simulated services' state, behind one lock, and every change to it as a method of
`SimulatorState`. The service modules (entra, dataverse, keyvault, identity, admin) read requests and
shape answers; they change state only through these methods. Serving it is the server's business:
`server.Simulator` (the public `devstack.simulator.Simulator`) adds `start`/`stop`, so this module
imports no service module and the server, which dispatches to all of them, closes no import cycle."""

from __future__ import annotations

import collections
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import jwt

from devstack.simulator.directory import (
    API_CLIENT_ID,
    API_IDENTIFIER_URI,
    API_SCOPE,
    BACKEND_CLIENT_ID,
    BACKEND_SECRET,
    OPERATOR_CLIENT_ID,
    OPERATOR_SECRET,
    SPA_CLIENT_ID,
    TEST_USERS,
    Directory,
)
from devstack.simulator.leads import KEY_COLUMN, LEAD_COLUMNS
from devstack.simulator.org import Org
from devstack.simulator.protection import Protection, Throttled

DEFAULT_TENANT = "7d1f2c3a-0b4e-4c59-9a6d-2f1e3b4c5d6e"
DEFAULT_CLIENT_ID = "3c8e4b1a-5d2f-4e6a-8b7c-9d0e1f2a3b4c"
DEFAULT_SECRET = "local-sim-secret-change-me"
DEFAULT_MI_CLIENT_ID = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
DEFAULT_IDENTITY_HEADER = "local-identity-header"
DEFAULT_SECRET_NAME = "d365-client-secret"

UpsertOutcome = Literal["exists", "missing", "updated", "created"]


def now() -> float:
    """The simulator's clock (epoch seconds)."""
    return time.time()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_dataverse_route(route: str) -> bool:
    """True for the simulator's Dataverse Web API routes (`lead_*`, `whoami`, `metadata`)."""
    return route.startswith("lead") or route in ("whoami", "metadata")


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


# Dataverse's service-protection limits, per user per web server, over a 300-second sliding window
# (Microsoft Learn, "Service protection API limits", api-limits.md, table "Limit per web server"):
# 6000 requests, 1200 s (20 minutes) of combined execution time, 52 concurrent requests.
DOCUMENTED_WINDOW_SECONDS = 300.0
DOCUMENTED_MAX_REQUESTS = 6000
DOCUMENTED_MAX_EXECUTION_MS = 1_200_000.0
DOCUMENTED_MAX_CONCURRENT = 52
# Execution time a request costs. Microsoft publishes no per-operation cost, only the timings of
# its BulkOperations samples on a standard table (microsoft/PowerApps-Samples, dataverse/…/
# BulkOperations READMEs; bulk-operations.md links them): 100 records one Create at a time ≈ 10 s,
# one CreateMultiple of 100 ≈ 1 s. Solving cost = request + n·record for both: request ≈ 90.9 ms,
# record ≈ 9.1 ms. A query is charged the per-request cost (no record is written).
REQUEST_COST_MS = 1000.0 / 11  # 90.9 ms
RECORD_COST_MS = 100.0 / 11  # 9.1 ms


@dataclass
class Limits:
    """Service-protection limits (per simulator, as Dataverse has them per user and server).

    Every limit is 0 (off) unless set. `max_requests` and `max_execution_ms` count over the
    sliding `window_seconds`; scale them together (`Limits.documented(scale, window)`) to keep
    Dataverse's ratio of 6000 requests to 1200 s. A request's execution time is
    `request_cost_ms + record_cost_ms × records written`; with `execute` the request also takes
    that long (the server is busy for it), else it is only charged."""

    max_requests: int = 0  # 0: off
    window_seconds: float = 300.0
    max_concurrent: int = 0  # 0: off
    concurrent_retry_after: float = 1.0
    max_execution_ms: float = 0.0  # 0: off
    request_cost_ms: float = 0.0
    record_cost_ms: float = 0.0
    execute: bool = False
    # Web servers behind the org URL, each with these limits for the user (protection.py), and how
    # much each request sent during a 429's pause lengthens it (0: Retry-After does not grow).
    web_servers: int = 1
    retry_after_growth_seconds: float = 0.0

    @classmethod
    def documented(cls, scale: float = 1.0, window_seconds: float = DOCUMENTED_WINDOW_SECONDS) -> Limits:
        """Dataverse's documented limits and the sample-derived costs, with both window limits
        multiplied by `scale` and by `window_seconds / 300` (so the rates scale by `scale` alone),
        52 concurrent requests, and requests taking their execution time."""
        factor = scale * window_seconds / DOCUMENTED_WINDOW_SECONDS
        return cls(
            max_requests=max(1, round(DOCUMENTED_MAX_REQUESTS * factor)),
            window_seconds=window_seconds,
            max_concurrent=DOCUMENTED_MAX_CONCURRENT,
            max_execution_ms=DOCUMENTED_MAX_EXECUTION_MS * factor,
            request_cost_ms=REQUEST_COST_MS,
            record_cost_ms=RECORD_COST_MS,
            execute=True,
        )

    def cost_ms(self, records: int) -> float:
        """The execution time charged for one request that wrote `records` records."""
        return self.request_cost_ms + self.record_cost_ms * records


class SimulatorState:
    """The simulated services and their state (`server.Simulator` serves them)."""

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
        ca_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        # Where the kept local CA lives (devstack/localca.py; `make run` passes the user's), or None
        # for a fresh CA on every start (tests that need no browser trust).
        self.ca_dir = Path(ca_dir) if ca_dir is not None else None
        self.host = host
        self.port = port
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.mi_client_id = mi_client_id
        self.identity_header = identity_header
        self.secret_name = secret_name
        self._lock = threading.RLock()
        # The tenant's directory: app registrations, test users, the RS256 signing key (published
        # as JWKS), and the codes and refresh tokens of the sign-in flow (directory.py).
        self.directory = Directory(tenant_id)
        self._initial_secret = client_secret
        self.ca_path = self.state_dir / "sim-ca.pem"
        self.bundle_path = self.state_dir / "ca-bundle.pem"
        self.storage_cert_path = self.state_dir / "storage-cert.pem"
        self.storage_key_path = self.state_dir / "storage-key.pem"
        self.reset()

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget leads, faults, limits, counters; restore the initial secret and config."""
        with self._lock:
            self._leads: dict[str, dict[str, Any]] = {}
            self._client_secrets: dict[str, list[str]] = {
                self.client_id: [self._initial_secret],
                BACKEND_CLIENT_ID: [BACKEND_SECRET],
                OPERATOR_CLIENT_ID: [OPERATOR_SECRET],
            }
            self._vault: dict[str, list[tuple[str, str]]] = {
                self.secret_name: [(uuid.uuid4().hex, self._initial_secret)]
            }
            self._faults: list[Fault] = []
            self._limits = Limits()
            self.alternate_key = True
            # Users, roles, solutions and lead metadata (org.py); starts connected.
            self.org = Org(self)
            self.token_lifetime = 3599
            self._issued_tokens: set[str] = set()
            self._revoked_tokens: set[str] = set()
            self.latency_ms = 0.0
            self._counters: collections.Counter[tuple[str, int]] = collections.Counter()
            # The web servers' windows, the entitlement count (protection.py).
            self._protection = Protection()
            self._version = 1000
            self._recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=500)

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
            "storage_cert": str(self.storage_cert_path.resolve()),
            "storage_key": str(self.storage_key_path.resolve()),
            "admin_url": f"{self.base_url}/_admin",
            # The Hunter UI path's registrations (directory.py): the API, its SPA, Hunter's backend.
            "authority": f"{self.base_url}/{self.tenant_id}",
            "openid_issuer": self.issuer("2.0"),
            "api_client_id": API_CLIENT_ID,
            "api_scope": f"{API_IDENTIFIER_URI}/{API_SCOPE}",
            "spa_client_id": SPA_CLIENT_ID,
            "backend_client_id": BACKEND_CLIENT_ID,
            "operator_client_id": OPERATOR_CLIENT_ID,
            "test_users": [
                {"username": u.username, "name": u.name, "roles": list(u.roles), "note": u.note} for u in TEST_USERS
            ],
            "pid": os.getpid(),
        }

    def configure(
        self, alternate_key: bool | None = None, token_lifetime: int | None = None, latency_ms: float | None = None
    ) -> dict[str, Any]:
        """Change what is given (the alternate key on `lead`, the lifetime of new tokens in seconds,
        latency added to every Dataverse request); returns the whole configuration."""
        with self._lock:
            if alternate_key is not None:
                self.alternate_key = bool(alternate_key)
            if token_lifetime is not None:
                self.token_lifetime = int(token_lifetime)
            if latency_ms is not None:
                self.latency_ms = float(latency_ms)
            return {
                "alternate_key": self.alternate_key,
                "token_lifetime": self.token_lifetime,
                "latency_ms": self.latency_ms,
            }

    # -- Entra ID applications and tokens ------------------------------------------------------

    def knows_client(self, client_id: str) -> bool:
        """True when `client_id` is a registered application."""
        with self._lock:
            return client_id in self._client_secrets

    def secret_matches(self, client_id: str, secret: str | None) -> bool:
        """True when `secret` is a current client secret of `client_id`."""
        with self._lock:
            return secret in self._client_secrets.get(client_id, [])

    def accepted_secrets(self) -> set[str]:
        """Every client secret Entra ID accepts right now (for leak checks)."""
        with self._lock:
            return {secret for values in self._client_secrets.values() for secret in values}

    def rotate_secret(
        self, client_id: str | None = None, new_secret: str | None = None, secret_name: str | None = None
    ) -> dict[str, str]:
        """Give `client_id` a new secret (the old one is revoked) and store it in the vault as a new
        version of `secret_name`."""
        client_id = client_id or self.client_id
        secret_name = secret_name or self.secret_name
        new_secret = new_secret or secrets.token_urlsafe(24)
        with self._lock:
            self._client_secrets[client_id] = [new_secret]
            version = self._add_secret_version(secret_name, new_secret)
        return {"client_id": client_id, "secret_name": secret_name, "version": version}

    def is_app_user(self, appid: Any) -> bool:
        """True when `appid` is an application user of the Dataverse environment."""
        return self.org.application_user(str(appid)) is not None

    def issue_token(
        self,
        audience: str,
        appid: str,
        version: str = "2.0",
        extra: dict[str, Any] | None = None,
        lifetime: int | None = None,
    ) -> tuple[str, int]:
        """A signed JWT (RS256, the key in the JWKS document) for `audience`; returns (token, expires_on epoch).

        `version` "1.0" gives the issuer of Entra ID's v1.0 access tokens, `https://sts.windows.net/{tenant}/`
        (Microsoft Learn, "Access tokens in the Microsoft identity platform": `iss` and `ver` claims),
        which is what the managed-identity endpoint hands out; "2.0" the simulator's own v2.0 issuer.
        `extra` claims (`roles`, `scp`, `azp`, user claims…) are added as given."""
        issued = int(now())
        expires = issued + int(self.token_lifetime if lifetime is None else lifetime)
        claims: dict[str, Any] = {
            "aud": audience.rstrip("/"),
            "iss": self.issuer(version),
            "ver": version,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "appid": appid,
            "tid": self.tenant_id,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, appid)),
            # Entra ID access tokens carry `uti`, a unique token id; the simulator uses it to
            # revoke tokens it has issued (see `revoke_tokens`).
            "uti": secrets.token_urlsafe(16),
        }
        if "idtyp" in (extra or {}):
            claims["sub"] = claims["oid"]  # an app token's subject is the client's service principal
        if version == "2.0":
            # v2.0 tokens name the client in `azp`, not `appid` (Microsoft Learn, access token claims).
            claims["azp"] = claims.pop("appid")
        claims.update(extra or {})
        with self._lock:
            self._issued_tokens.add(str(claims["uti"]))
        return self.directory.sign(claims), expires

    def api_app_token(self, client_id: str, lifetime: int | None = None) -> tuple[str, int]:
        """A client-credentials token for the API (`api://<api>/.default`): v2.0, `aud` the API's
        client id, `roles` the application roles granted to `client_id` (none: no claim)."""
        extra: dict[str, Any] = {"idtyp": "app", "azpacr": "1"}
        if self.directory.app_roles.get(client_id):
            extra["roles"] = list(self.directory.app_roles[client_id])
        return self.issue_token(API_CLIENT_ID, client_id, extra=extra, lifetime=lifetime)

    def issuer(self, version: str = "2.0") -> str:
        """The `iss` of the tokens of `version`: v1.0 `https://sts.windows.net/{tenant}/`, v2.0
        `{authority}/{tenant}/v2.0` (the discovery document's `issuer`)."""
        if version == "1.0":
            return f"https://sts.windows.net/{self.tenant_id}/"
        return f"{self.base_url}/{self.tenant_id}/v2.0"

    def verify_token(self, authorization: str | None, audience: str) -> dict[str, Any] | None:
        """The token's claims if `authorization` holds a valid, unexpired token for `audience`."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                authorization[7:].strip(),
                self.directory.public_key(),
                algorithms=["RS256"],
                options={"verify_aud": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return None
        if claims.get("exp", 0) <= now() or claims.get("aud") != audience.rstrip("/"):
            return None
        with self._lock:
            if claims.get("uti") in self._revoked_tokens:
                return None
        return claims

    def revoke_tokens(self) -> int:
        """Make every token issued so far invalid before its expiry (as a revoked session, an
        application user disabled and enabled again, or a rotated secret does in Dataverse):
        resources then answer 401. Returns how many tokens were revoked."""
        with self._lock:
            fresh = self._issued_tokens - self._revoked_tokens
            self._revoked_tokens |= fresh
            return len(fresh)

    # -- Key Vault -----------------------------------------------------------------------------

    def put_secret(self, name: str, value: str) -> str:
        """Store a new version of secret `name`; returns the version id."""
        with self._lock:
            return self._add_secret_version(name, value)

    def _add_secret_version(self, name: str, value: str) -> str:
        version = uuid.uuid4().hex
        self._vault.setdefault(name, []).append((version, value))
        return version

    def secret_version(self, name: str, version: str = "") -> tuple[str, str] | None:
        """(version id, value) of secret `name` at `version` (the latest when empty), or None."""
        with self._lock:
            versions = self._vault.get(name, [])
            match = [v for v in versions if v[0] == version] if version else versions[-1:]
        return match[0] if match else None

    # -- faults, limits, counters --------------------------------------------------------------

    def add_fault(self, fault: Fault) -> list[dict[str, Any]]:
        """Inject `fault`; returns every fault still armed."""
        with self._lock:
            self._faults.append(fault)
            return self.faults()

    def clear_faults(self) -> list[dict[str, Any]]:
        """Disarm every fault; returns the (empty) list."""
        with self._lock:
            self._faults.clear()
            return self.faults()

    def faults(self) -> list[dict[str, Any]]:
        """The injected faults, as JSON objects."""
        with self._lock:
            return [asdict(fault) for fault in self._faults]

    def take_fault(self, route: str) -> Fault | None:
        """The first matching fault (its count is used up), or None. "*" is every *Dataverse*
        route, as `Fault` documents: a Dataverse storm must not also fail Entra ID, the sign-in
        provider, Key Vault or the managed-identity endpoint (which storage's tokens come from
        since the stack reaches Azurite by identity); name those routes to fault them."""
        wildcard = is_dataverse_route(route)
        with self._lock:
            for fault in self._faults:
                if (fault.route == route or (wildcard and fault.route == "*")) and fault.times != 0:
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def set_limits(self, limits: Limits) -> dict[str, Any]:
        """Replace the service-protection limits and start a new window; returns them."""
        with self._lock:
            self._limits = limits
            self._protection = Protection(limits.web_servers)
            return asdict(limits)

    def limit_message(self, code: str) -> str:
        """The message Dataverse sends with a service-protection 429 of `code` (api-limits.md),
        naming the limits in force (the documented defaults when none are set)."""
        with self._lock:
            limits = self._limits
        window = limits.window_seconds if (limits.max_requests or limits.max_execution_ms) else 300.0
        if code == "0x80072321":
            budget = limits.max_execution_ms or DOCUMENTED_MAX_EXECUTION_MS
            return (
                f"Combined execution time of incoming requests exceeded limit of {budget:,.0f} milliseconds over "
                f"time window of {window:g} seconds. Decrease number of concurrent requests or reduce the "
                "duration of requests and try again later."
            )
        if code == "0x80072326":
            return f"Number of concurrent requests exceeded the limit of {limits.max_concurrent or 52}."
        requests = limits.max_requests or DOCUMENTED_MAX_REQUESTS
        return f"Number of requests exceeded the limit of {requests} over time window of {window:g} seconds."

    def web_server(self, cookie_header: str | None) -> tuple[int, str | None]:
        """The web server a Dataverse request goes to (by its `ARRAffinity` cookie) and the
        `Set-Cookie` to answer with, if any (protection.py)."""
        with self._lock:
            return self._protection.route(cookie_header)

    def admit(self, server: int = 0) -> Throttled | None:
        """Apply service-protection limits to one Dataverse request on web server `server`: None
        when admitted (then `release` must follow), else why it is refused.

        As api-limits.md describes: exceeding the concurrent limit is refused at once; the two
        window limits refuse a request once the preceding `window_seconds` already hold the
        limit's worth of requests or of execution time (which is charged when a request ends, so
        work in flight can carry the total past the limit, as in Dataverse). Retry-After is the
        time until the window has room again. Codes and messages are api-limits.md's; each web
        server keeps its own windows (protection.py)."""
        with self._lock:
            return self._protection.admit(self._limits, server, now())

    def execution_cost(self, records: int) -> float:
        """Seconds a request that writes `records` records takes, when limits say requests take
        their execution time (else 0)."""
        with self._lock:
            limits = self._limits
            return limits.cost_ms(records) / 1000 if limits.execute else 0.0

    def release(self, records: int = 0, server: int = 0) -> None:
        """One admitted Dataverse request has finished on `server`, having written `records`
        records: its execution time is charged to that server's window now."""
        with self._lock:
            self._protection.release(self._limits, server, records, now())

    def count(self, route: str, status: int, request_id: str | None = None) -> None:
        """Record one answered request (and, for the last 500, its client request id)."""
        with self._lock:
            self._counters[(route, status)] += 1
            if route != "admin":
                self._recent.append({"route": route, "status": status, "client_request_id": request_id, "at": now()})

    def counters_json(self) -> dict[str, Any]:
        """Counters as `{route: {status: n}}` plus totals."""
        with self._lock:
            routes: dict[str, dict[str, int]] = {}
            for (route, status), n in self._counters.items():
                routes.setdefault(route, {})[str(status)] = n
            return {
                "routes": routes,
                "total": sum(self._counters.values()),
                "max_concurrent_seen": self._protection.max_inflight,
                "execution_ms": round(self._protection.executed_total_ms, 1),
                "entitlement_requests": self._protection.entitlement,
                "refused_by_code": dict(self._protection.refused),
                "web_servers": self._protection.per_server(),
            }

    def recent_requests(self) -> list[dict[str, Any]]:
        """The last 500 answered requests (route, status, client request id, time)."""
        with self._lock:
            return list(self._recent)

    # -- leads ---------------------------------------------------------------------------------

    def store_lead(self, fields: dict[str, Any], lead_id: str | None = None) -> dict[str, Any]:
        """Insert a validated lead; returns the record."""
        with self._lock:
            self._version += 1
            stamp = _iso(now())
            record = {column: fields.get(column) for column in LEAD_COLUMNS}
            record.update(fields)
            record["fullname"] = (
                " ".join(part for part in (record.get("firstname"), record.get("lastname")) if part) or None
            )
            new_id = lead_id or str(uuid.uuid4())
            record.update(leadid=new_id, createdon=stamp, modifiedon=stamp, versionnumber=self._version)
            self._leads[new_id] = record
            return dict(record)

    def create_lead(self, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Insert a validated lead unless the alternate key is on and another lead holds its key
        (then None: Dataverse's duplicate-key 412)."""
        with self._lock:
            key = fields.get(KEY_COLUMN)
            if self.alternate_key and isinstance(key, str) and self._by_key(key) is not None:
                return None
            return self.store_lead(fields)

    def create_leads(self, targets: list[dict[str, Any]]) -> tuple[list[str] | None, int]:
        """CreateMultiple on a standard table: all or nothing (bulk-operations.md, "On Error
        behavior with standard tables"). With the alternate key on, a key value that another lead
        holds, or that two targets share, fails the whole call. Returns (the new ids in order, or
        None when nothing was created; the index of the offending target, or -1)."""
        with self._lock:
            seen: set[str] = set()
            for index, fields in enumerate(targets):
                key = fields.get(KEY_COLUMN)
                if not (self.alternate_key and isinstance(key, str)):
                    continue
                folded = key.casefold()
                if folded in seen or self._by_key(key) is not None:
                    return None, index
                seen.add(folded)
            return [self.store_lead(fields)["leadid"] for fields in targets], -1

    def upsert_lead(
        self, key: str, fields: dict[str, Any], if_match: bool = False, if_none_match: bool = False
    ) -> tuple[UpsertOutcome, dict[str, Any] | None]:
        """Update the lead whose alternate key is `key`, or create it. `if_none_match` (If-None-Match: *)
        refuses an update ("exists"), `if_match` (If-Match: *) refuses a create ("missing")."""
        with self._lock:
            existing = self._by_key(key)
            if existing is not None and if_none_match:
                return "exists", None
            if existing is None and if_match:
                return "missing", None
            if existing is not None:
                existing.update(fields)
                self._version += 1
                existing["versionnumber"] = self._version
                return "updated", dict(existing)
            return "created", self.store_lead({**fields, KEY_COLUMN: fields.get(KEY_COLUMN, key)})

    def find_by_key(self, value: str) -> dict[str, Any] | None:
        """The lead whose alternate key (hnt_domain) equals `value`, case-insensitively."""
        with self._lock:
            record = self._by_key(value)
            return None if record is None else dict(record)

    def _by_key(self, value: str) -> dict[str, Any] | None:
        wanted = value.casefold()
        for record in self._leads.values():
            if isinstance(record.get(KEY_COLUMN), str) and record[KEY_COLUMN].casefold() == wanted:
                return record
        return None

    def get_lead(self, lead_id: str) -> dict[str, Any] | None:
        """The lead with id `lead_id` (lower-case), or None."""
        with self._lock:
            record = self._leads.get(lead_id)
            return None if record is None else dict(record)

    def delete_lead(self, lead_id: str) -> bool:
        """Delete the lead with id `lead_id` (lower-case); False when there was none."""
        with self._lock:
            return self._leads.pop(lead_id, None) is not None

    def lead_snapshot(self) -> tuple[tuple[int, int], list[dict[str, Any]]]:
        """(A marker that changes with every create, update and delete; every lead), taken
        together under the lock — for `persist.py`, which keeps the leads across restarts."""
        with self._lock:
            return (self._version, len(self._leads)), [dict(r) for r in self._leads.values()]

    def restore_leads(self, records: list[dict[str, Any]]) -> None:
        """Put back leads saved by `persist.py` (ids, keys and version numbers as they were)."""
        with self._lock:
            for record in records:
                self._leads[str(record["leadid"])] = dict(record)
                self._version = max(self._version, int(record.get("versionnumber") or 0))

    def leads(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """Every lead (that `predicate` accepts), in insertion order."""
        with self._lock:
            return [dict(r) for r in self._leads.values() if predicate is None or predicate(r)]
