"""The admin API under /_admin (JSON, no auth; loopback test tooling). Not a Microsoft service:
it sets up faults, limits and secrets and shows what the simulated services saw. Each route calls
one `Simulator` method; `admin_client.SimulatorAdmin` is its only client.

    GET    /_admin/info                 URLs, ids, CA paths (no secrets)
    GET    /_admin/leads                all leads            DELETE /_admin/leads/{id}
    POST   /_admin/leads                seed a lead          GET    /_admin/counters
    GET    /_admin/requests             the last 500 requests: route, status, x-ms-client-request-id
    POST   /_admin/faults               {route, status, times, retry_after, latency_ms, drop_after_commit, code}
    DELETE /_admin/faults               clear faults
    POST   /_admin/limits               {max_requests, window_seconds, max_concurrent, concurrent_retry_after,
                                         max_execution_ms, request_cost_ms, record_cost_ms, execute,
                                         web_servers, retry_after_growth_seconds}
    POST   /_admin/config               {alternate_key, token_lifetime, latency_ms}
    POST   /_admin/rotate-secret        {client_id, new_secret, secret_name}: new client secret, also in the vault
    PUT    /_admin/secrets/{name}       {value}: a new version in the vault
    POST   /_admin/tokens/revoke        every issued token answers 401 from now on
    POST   /_admin/spa-redirects        {uri}: register a single-page-app redirect URI (the sign-in flow)
    POST   /_admin/refresh-tokens/expire  every refresh token of the sign-in flow is expired
    POST   /_admin/reset                forget everything
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from devstack.simulator.leads import validate_lead
from devstack.simulator.state import Fault, Limits
from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator


def handle(sim: Simulator, request: Request) -> Response:
    """Answer one admin request."""
    method = request.method
    parts = request.path.strip("/").split("/")[1:]
    data: Any = json.loads(request.body) if request.body else {}
    resource = parts[0] if parts else ""
    if resource == "info":
        return json_response(200, sim.info())
    if resource == "reset" and method == "POST":
        sim.reset()
        return json_response(200, {"reset": True})
    if resource == "counters":
        return json_response(200, sim.counters_json())
    if resource == "requests":
        return json_response(200, {"value": sim.recent_requests()})
    if resource == "leads":
        return _leads(sim, method, parts, data)
    if resource == "faults":
        if method == "DELETE":
            return json_response(200, {"faults": sim.clear_faults()})
        if method == "POST":
            return json_response(200, {"faults": sim.add_fault(Fault(**data))})
        return json_response(200, {"faults": sim.faults()})
    if resource == "limits" and method == "POST":
        return json_response(200, sim.set_limits(Limits(**data)))
    if resource == "config" and method == "POST":
        return json_response(
            200,
            sim.configure(
                alternate_key=data.get("alternate_key"),
                token_lifetime=data.get("token_lifetime"),
                latency_ms=data.get("latency_ms"),
            ),
        )
    if resource == "tokens" and parts[1:] == ["revoke"] and method == "POST":
        return json_response(200, {"revoked": sim.revoke_tokens()})
    if resource == "spa-redirects" and method == "POST":
        return json_response(200, {"spa_redirect_uris": sim.directory.add_spa_redirect(str(data["uri"]))})
    if resource == "refresh-tokens" and parts[1:] == ["expire"] and method == "POST":
        return json_response(200, {"expired": sim.directory.expire_refresh_tokens()})
    if resource == "rotate-secret" and method == "POST":
        return json_response(
            200, sim.rotate_secret(data.get("client_id"), data.get("new_secret"), data.get("secret_name"))
        )
    if resource == "secrets" and method == "PUT" and len(parts) == 2:
        return json_response(200, {"name": parts[1], "version": sim.put_secret(parts[1], str(data["value"]))})
    return json_response(404, {"error": "unknown admin route"})


def _leads(sim: Simulator, method: str, parts: list[str], data: Any) -> Response:
    if method == "GET":
        return json_response(200, {"value": sim.leads()})
    if method == "DELETE" and len(parts) == 2:
        gone = sim.delete_lead(parts[1].lower())
        return json_response(200 if gone else 404, {"deleted": gone})
    if method == "POST":
        fields, error = validate_lead(data)
        if error is not None or fields is None:
            return error or json_response(400, {})
        return json_response(201, sim.store_lead(fields))
    return json_response(405, {"error": "method not allowed"})
