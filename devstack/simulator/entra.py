"""Entra ID: OpenID discovery and the v2.0 token endpoint (client credentials with a secret; the
browser grants — authorization code with PKCE, refresh token — are in signin.py).

Shapes from Microsoft identity platform docs ("OAuth 2.0 client credentials flow", "OpenID Connect
discovery") and MSAL's reading of them; AADSTS codes as Entra ID sends them for each refusal.
Client credentials for the API (`api://<api>/.default`) give a v2.0 token whose `roles` are the
application roles granted to the client ("Add app roles…": application permissions arrive in
`roles`; no `scp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from devstack.simulator import devicecode, signin
from devstack.simulator.aadsts import error_response
from devstack.simulator.directory import API_CLIENT_ID, API_IDENTIFIER_URI
from devstack.simulator.state import now
from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator


def discovery(sim: Simulator, request: Request) -> Response:
    """GET /{tenant}/v2.0/.well-known/openid-configuration"""
    tenant = request.path.strip("/").split("/")[0]
    base = f"{sim.base_url}/{tenant}"
    return json_response(
        200,
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"{base}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "userinfo_endpoint": f"{sim.base_url}/oidc/userinfo",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "auth_time",
                "nonce",
                "name",
                "preferred_username",
                "oid",
                "tid",
                "ver",
                "email",
            ],
            "request_uri_parameter_supported": False,
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "cloud_instance_name": "microsoftonline.com",
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
        {"Access-Control-Allow-Origin": "*"},
    )


def token(sim: Simulator, request: Request) -> Response:
    """POST /{tenant}/oauth2/v2.0/token (grant_type=client_credentials, scope=<resource>/.default)"""
    tenant = request.path.strip("/").split("/")[0]
    form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    if tenant != sim.tenant_id:
        return error_response(sim, request, 400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
    if form.get("grant_type") in ("authorization_code", "refresh_token"):
        return signin.redeem(sim, request, form)
    if form.get("grant_type") == devicecode.GRANT:
        return devicecode.redeem(sim, form)
    if form.get("grant_type") != "client_credentials":
        return signin.cors(
            request,
            error_response(
                sim, request, 400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            ),
        )
    client_id = form.get("client_id", "")
    if not sim.knows_client(client_id):
        return error_response(
            sim,
            request,
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
        )
    if not sim.secret_matches(client_id, form.get("client_secret")):
        return error_response(
            sim,
            request,
            401,
            "invalid_client",
            7000215,
            f"Invalid client secret provided. Ensure the secret being sent in the request is the client "
            f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        )
    scope = form.get("scope", "")
    if not scope.endswith("/.default"):
        return error_response(
            sim, request, 400, "invalid_scope", 1002012, f"The provided value for scope {scope} is not valid."
        )
    resource = scope[: -len("/.default")]
    if resource in (API_IDENTIFIER_URI, API_CLIENT_ID):
        # A v2.0 token for the API (its manifest accepts v2.0 tokens): `aud` is the API's client id,
        # `roles` the application roles granted to this client, `idtyp` says it is an app token.
        access_token, expires = sim.api_app_token(client_id)
    else:
        access_token, expires = sim.issue_token(resource, client_id)
    return json_response(
        200,
        {
            "token_type": "Bearer",
            "expires_in": expires - int(now()),
            "ext_expires_in": expires - int(now()),
            "access_token": access_token,
        },
    )
