"""Key Vault secrets (GET /secrets/{name}[/{version}]): a 401 challenge naming the authority and
resource first, as the vault does for a request without a token (Microsoft Learn, "Azure Key
Vault authentication"; azure-keyvault-secrets' challenge policy reads it), then the secret bundle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devstack.simulator.state import now
from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator

VAULT_RESOURCE = "https://vault.azure.net"


def get_secret(sim: Simulator, request: Request) -> Response:
    """GET /secrets/{name}[/{version}]"""
    claims = sim.verify_token(request.header("Authorization"), VAULT_RESOURCE)
    if claims is None:
        challenge = f'Bearer authorization="{sim.base_url}/{sim.tenant_id}", resource="{VAULT_RESOURCE}"'
        return json_response(
            401,
            {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
            {"WWW-Authenticate": challenge},
        )
    parts = request.path.strip("/").split("/")
    name = parts[1] if len(parts) > 1 else ""
    found = sim.secret_version(name, parts[2] if len(parts) > 2 else "")
    if found is None:
        return json_response(
            404,
            {
                "error": {
                    "code": "SecretNotFound",
                    "message": f"A secret with (name/id) {name} was not found in this key vault.",
                }
            },
        )
    version_id, value = found
    stamp = int(now())
    return json_response(
        200,
        {
            "value": value,
            "id": f"{sim.base_url}/secrets/{name}/{version_id}",
            "attributes": {
                "enabled": True,
                "created": stamp,
                "updated": stamp,
                "recoveryLevel": "Recoverable+Purgeable",
            },
            "tags": {},
        },
    )
