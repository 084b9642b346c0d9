"""`SimulatorAdmin`: the one client of the simulator's admin API (`admin.py`), shared by the tests,
the benchmarks and the demo. Every method is one HTTP call and raises `requests.HTTPError` when the
simulator refuses it."""

from __future__ import annotations

from typing import Any

import requests


class SimulatorAdmin:
    """The admin API of the simulator at `base_url` (its origin, e.g. `Simulator.base_url`).

    `verify` is what requests takes: None trusts REQUESTS_CA_BUNDLE, or a CA bundle path."""

    def __init__(self, base_url: str, verify: str | bool | None = None, timeout: float = 30) -> None:
        self.url = f"{base_url.rstrip('/')}/_admin"
        self.verify = verify
        self.timeout = timeout
        self._http = requests.Session()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        options: dict[str, Any] = {"json": body, "timeout": self.timeout}
        if self.verify is not None:
            options["verify"] = self.verify
        response = self._http.request(method, f"{self.url}/{path}", **options)
        response.raise_for_status()
        return response.json()

    # -- inspection ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """URLs, ids and CA paths (no secrets)."""
        return dict(self._call("GET", "info"))

    def leads(self) -> list[dict[str, Any]]:
        """Every lead in the simulated Dataverse."""
        return list(self._call("GET", "leads")["value"])

    def counters(self) -> dict[str, Any]:
        """`{"routes": {route: {status: n}}, "total": n, "max_concurrent_seen": n, "execution_ms": ms}`
        (execution time charged by the service-protection model since the last reset)."""
        return dict(self._call("GET", "counters"))

    def routes(self) -> dict[str, dict[str, int]]:
        """Requests answered so far, `{route: {status: n}}`, without the admin calls."""
        return {route: n for route, n in self.counters()["routes"].items() if route != "admin"}

    def requests(self) -> list[dict[str, Any]]:
        """The last 500 requests: route, status, client_request_id, at."""
        return list(self._call("GET", "requests")["value"])

    # -- changes -------------------------------------------------------------------------------

    def delete_lead(self, lead_id: str) -> None:
        """Delete a lead behind the app's back (raises when there is none)."""
        self._call("DELETE", f"leads/{lead_id}")

    def add_fault(
        self,
        route: str,
        status: int = 0,
        times: int = 1,
        retry_after: float | None = None,
        latency_ms: float = 0.0,
        drop_after_commit: bool = False,
        code: str = "",
    ) -> None:
        """Fail the next `times` requests to `route` ("*": every Dataverse route; -1: forever)
        with `status`, after `latency_ms`; or answer and then drop the connection."""
        self._call(
            "POST",
            "faults",
            {
                "route": route,
                "status": status,
                "times": times,
                "retry_after": retry_after,
                "latency_ms": latency_ms,
                "drop_after_commit": drop_after_commit,
                "code": code,
            },
        )

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._call("DELETE", "faults")

    def set_limits(
        self,
        max_requests: int = 0,
        window_seconds: float = 300.0,
        max_concurrent: int = 0,
        concurrent_retry_after: float = 1.0,
        max_execution_ms: float = 0.0,
        request_cost_ms: float = 0.0,
        record_cost_ms: float = 0.0,
        execute: bool = False,
        web_servers: int = 1,
        retry_after_growth_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Service-protection limits (0: off) and the execution-time cost model (see
        `state.Limits`; `Limits.documented(scale, window)` gives Dataverse's); returns them."""
        return dict(
            self._call(
                "POST",
                "limits",
                {
                    "max_requests": max_requests,
                    "window_seconds": window_seconds,
                    "max_concurrent": max_concurrent,
                    "concurrent_retry_after": concurrent_retry_after,
                    "max_execution_ms": max_execution_ms,
                    "request_cost_ms": request_cost_ms,
                    "record_cost_ms": record_cost_ms,
                    "execute": execute,
                    "web_servers": web_servers,
                    "retry_after_growth_seconds": retry_after_growth_seconds,
                },
            )
        )

    def configure(
        self, alternate_key: bool | None = None, token_lifetime: int | None = None, latency_ms: float | None = None
    ) -> dict[str, Any]:
        """Change what is given; returns the whole configuration."""
        settings = {"alternate_key": alternate_key, "token_lifetime": token_lifetime, "latency_ms": latency_ms}
        return dict(self._call("POST", "config", {k: v for k, v in settings.items() if v is not None}))

    def rotate_secret(
        self, new_secret: str | None = None, client_id: str | None = None, secret_name: str | None = None
    ) -> dict[str, Any]:
        """A new client secret (the old one stops working), also stored in the vault."""
        body = {"new_secret": new_secret, "client_id": client_id, "secret_name": secret_name}
        return dict(self._call("POST", "rotate-secret", {k: v for k, v in body.items() if v is not None}))

    def put_secret(self, name: str, value: str) -> str:
        """A new version of vault secret `name`; returns its version id."""
        return str(self._call("PUT", f"secrets/{name}", {"value": value})["version"])

    def revoke_tokens(self) -> int:
        """Make every token issued so far answer 401; returns how many."""
        return int(self._call("POST", "tokens/revoke")["revoked"])

    def add_spa_redirect(self, uri: str) -> list[str]:
        """Register `uri` as a redirect URI of the single-page app; returns all of them."""
        return list(self._call("POST", "spa-redirects", {"uri": uri})["spa_redirect_uris"])

    def expire_refresh_tokens(self) -> int:
        """Expire every refresh token of the sign-in flow; returns how many."""
        return int(self._call("POST", "refresh-tokens/expire")["expired"])

    def reset(self) -> None:
        """Forget leads, faults, limits, counters; restore the initial secret and config."""
        self._call("POST", "reset")
