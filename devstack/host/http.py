"""HTTP triggers as the Functions host serves them.

Sources (azure-functions-host unless noted):
- WebScriptHostHttpRoutesManager.cs: each function's route is mapped under `routePrefix` with an
  `HttpMethodRouteConstraint` of its declared methods (none declared: any method). A request whose
  method is not allowed simply matches no route → 404, not 405; HEAD is not implied by GET → 404.
- FunctionInvocationMiddleware.cs: no route → 404; key check failed → 401 (UnauthorizedResult,
  empty body). Keys: see keys.py.
- ExceptionMiddleware.cs: an exception from the invocation → 500 with an empty body.
- GrpcMessageConversionExtensions.ToRpcHttp: the worker gets the query as `Query[key].ToString()`
  (repeated keys joined with ","; empty values left out, since the Python worker does not ask for
  nullable dictionaries), header names lower-cased with repeated values joined with ",".
- Kestrel decodes the request path before routing except `%2F` (ASP.NET Core docs, "Routing":
  "%2F is not decoded"), so a route value keeps `%2F` encoded and cannot match a `/`.
- In front of all of it, when configured: the platform's CORS, then App Service Authentication
  (easyauth.py; the order from azure-functions-host issue #7316).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack.host.easyauth import Answer, Cors, EasyAuth, strip_injected
from devstack.host.keys import HEADER, QUERY, Keys
from devstack.host.worker import InvocationFailed, Worker

logger = logging.getLogger("devstack.host")


@dataclass
class HttpRoute:
    name: str
    methods: set[str] | None  # None: any method
    pattern: re.Pattern[str]
    function: Any
    arg_name: str
    auth_level: str


def compile_route(prefix: str, route: str) -> re.Pattern[str]:
    """A route template (`v1/leads/{domain}`) as a case-insensitive regex with named groups.
    Constraints (`{id:int}`) are not checked: the app declares none."""
    path = "/" + "/".join(part for part in (prefix.strip("/"), route.strip("/")) if part)
    regex = re.sub(r"\\\{(\w+)(?::[^}]*)?\\\}", r"(?P<\1>[^/]+)", re.escape(path))
    return re.compile(f"^{regex}/?$", re.IGNORECASE)


def decode_path(raw: str) -> str:
    """Percent-decode a request path as Kestrel does: everything except `%2F`."""
    return "%2F".join(unquote(part) for part in re.split(r"%2[fF]", raw))


def worker_query(query: str) -> dict[str, str]:
    """The query dictionary the Python worker receives."""
    joined: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        joined.setdefault(key, []).append(value)
    return {key: ",".join(values) for key, values in joined.items() if ",".join(values)}


def worker_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The header dictionary the Python worker receives."""
    joined: dict[str, list[str]] = {}
    for name, value in pairs:
        joined.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in joined.items()}


class HttpFrontEnd:
    """Routes, authorizes and invokes HTTP triggers."""

    def __init__(
        self,
        routes: list[HttpRoute],
        keys: Keys,
        worker: Worker,
        auth: EasyAuth | None = None,
        cors: Cors | None = None,
    ) -> None:
        self.routes = routes
        self.keys = keys
        self.worker = worker
        self.auth = auth
        self.cors = cors

    def handle(
        self, method: str, raw_path: str, header_pairs: list[tuple[str, str]], body: bytes, base: str
    ) -> tuple[int, dict[str, str], bytes]:
        """One request → (status, headers, body): CORS, App Service Authentication, then the function."""
        headers = strip_injected(worker_headers(header_pairs))
        if self.cors is not None:
            preflight = self.cors.preflight(method, headers)
            if preflight is not None:
                return preflight.status, preflight.headers, preflight.body
        status, out, payload = self._authenticated(method, raw_path, headers, body, base)
        if self.cors is not None:
            out = {**out, **self.cors.response_headers(headers)}
        return status, out, payload

    def _authenticated(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes, base: str
    ) -> tuple[int, dict[str, str], bytes]:
        if self.auth is not None:
            outcome = self.auth.authenticate(decode_path(urlsplit(raw_path).path), headers)
            if isinstance(outcome, Answer):
                return outcome.status, outcome.headers, outcome.body
            headers = {**headers, **outcome}
        return self._invoke(method, raw_path, headers, body, base)

    def _invoke(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes, base: str
    ) -> tuple[int, dict[str, str], bytes]:
        import azure.functions as func

        url = urlsplit(raw_path)
        path = decode_path(url.path)
        for route in self.routes:
            match = route.pattern.match(path)
            if not match or (route.methods is not None and method not in route.methods):
                continue
            key = headers.get(HEADER) or dict(parse_qsl(url.query)).get(QUERY)
            if not self.keys.allows(route.auth_level, key, route.name):
                return 401, {}, b""
            request = func.HttpRequest(
                method=method,
                url=f"{base}{raw_path}",
                headers=headers,
                params=worker_query(url.query),
                route_params=match.groupdict(),
                body=body,
            )
            try:
                response = self.worker.invoke(route.name, route.function, {route.arg_name: request})
            except InvocationFailed:
                logger.exception("host_function_failed", extra={"function": route.name})
                return 500, {}, b""
            out_headers = dict(response.headers)
            out_headers.setdefault("Content-Type", response.mimetype or "text/plain")
            return response.status_code, out_headers, response.get_body() or b""
        return 404, {}, b""
