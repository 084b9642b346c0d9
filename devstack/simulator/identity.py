"""The App Service / Functions managed-identity endpoint (`IDENTITY_ENDPOINT`, api-version
2019-08-01): the caller proves it runs on the host with `X-IDENTITY-HEADER`; `resource` names the
audience; `client_id` picks a user-assigned identity (Microsoft Learn, "Managed identities for App
Service and Azure Functions", REST endpoint reference)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator


def token(sim: Simulator, request: Request) -> Response:
    """GET /msi/token?api-version=2019-08-01&resource=…[&client_id=…]"""
    if request.header("X-IDENTITY-HEADER") != sim.identity_header:
        return json_response(401, {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER missing or wrong."})
    resource = request.query.get("resource", "")
    if not resource:
        return json_response(400, {"statusCode": 400, "message": "resource is required."})
    client_id = request.query.get("client_id") or sim.mi_client_id
    if client_id != sim.mi_client_id:
        return json_response(400, {"statusCode": 400, "message": f"Identity with client_id {client_id} not found."})
    resource = resource[: -len("/.default")] if resource.endswith("/.default") else resource
    # Resource-based requests get v1.0 tokens (issuer https://sts.windows.net/{tenant}/), as from the
    # real endpoint; Azurite's OAuth mode accepts only Entra ID issuers (see devstack/processes.py).
    access_token, expires = sim.issue_token(resource, client_id, version="1.0")
    return json_response(
        200,
        {
            "access_token": access_token,
            "expires_on": str(expires),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        },
    )
