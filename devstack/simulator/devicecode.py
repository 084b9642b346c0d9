"""Entra ID's device authorization grant, for a person signing in to a command line tool (`connect`,
through azure-identity's `DeviceCodeCredential`, which drives MSAL's device flow).

    POST /{tenant}/oauth2/v2.0/devicecode        client_id, scope → device_code, user_code, verification_uri
    GET|POST /devicelogin                        the page a person enters the code on (a test user's name)
    POST /{tenant}/oauth2/v2.0/token             grant_type=urn:ietf:params:oauth:grant-type:device_code

Microsoft Learn, "Microsoft identity platform and the OAuth 2.0 device authorization grant flow":
the device authorization response (`device_code`, `user_code`, `verification_uri`, `expires_in`,
`interval`, `message`); polling answers 400 `authorization_pending` (AADSTS70016) until the user
signs in, `expired_token` (AADSTS70020) after `expires_in`; then a token response. A token for
`<org>/.default` is a delegated Dataverse token of the signed-in person (`scp`, `oid`), which the
simulated Dataverse maps to that person's systemuser (org.py).
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from devstack.simulator.directory import User
from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
LIFETIME = 900  # seconds a device code lives (Entra ID: 15 minutes)


@dataclass
class DeviceCode:
    """One device code in flight: who asked, for what, and who approved it (when someone has)."""

    client_id: str
    scopes: list[str]
    user_code: str
    expires: float
    user: User | None = None


def _form(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}


def start(sim: Simulator, request: Request) -> Response:
    """POST /{tenant}/oauth2/v2.0/devicecode"""
    form = _form(request)
    device_code = secrets.token_urlsafe(32)
    user_code = secrets.token_hex(4).upper()
    sim.org.device_codes[device_code] = DeviceCode(
        form.get("client_id", ""), form.get("scope", "").split(), user_code, time.time() + LIFETIME
    )
    uri = f"{sim.base_url}/devicelogin"
    return json_response(
        200,
        {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": uri,
            "expires_in": LIFETIME,
            "interval": 1,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate.",
        },
    )


def page(sim: Simulator, request: Request) -> Response:
    """GET|POST /devicelogin: enter the code and a test user's name (the simulator has no passwords)."""
    form = _form(request) if request.method == "POST" else {}
    note = ""
    if form:
        user = sim.directory.user(form.get("username", ""))
        pending = next(
            (d for d in sim.org.device_codes.values() if d.user_code == form.get("user_code", "").upper()), None
        )
        if user is None or pending is None or pending.expires < time.time():
            note = "<p>Unknown or expired code, or unknown user.</p>"
        else:
            pending.user = user
            return _html(200, f"<p>{html.escape(user.name)} signed in. You can close this window.</p>")
    return _html(
        200 if not note else 400,
        note + "<form method='post'><label>Code <input name='user_code'></label>"
        "<label>User <input name='username' value='admin@hunter.example'></label><button>Sign in</button></form>",
    )


def _html(status: int, body: str) -> Response:
    document = f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Device sign-in</title></head><body>{body}</body></html>"
    return Response(
        status, document.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    )


def _error(error: str, code: int, text: str) -> Response:
    return json_response(400, {"error": error, "error_description": f"AADSTS{code}: {text}", "error_codes": [code]})


def redeem(sim: Simulator, form: dict[str, str]) -> Response:
    """The token endpoint's device_code grant: pending until approved, then the person's token."""
    flow = sim.org.device_codes.get(form.get("device_code", ""))
    if flow is None or flow.client_id != form.get("client_id"):
        return _error("invalid_grant", 70000, "The provided value for the 'device_code' is not valid.")
    if flow.expires < time.time():
        return _error("expired_token", 70020, "The provided value for the 'device_code' has expired.")
    if flow.user is None:
        return _error("authorization_pending", 70016, "OAuth 2.0 device flow error. Authorization is pending.")
    del sim.org.device_codes[form["device_code"]]
    resources = [s[: -len("/.default")] for s in flow.scopes if s.endswith("/.default")]
    person = {"oid": flow.user.oid, "name": flow.user.name, "preferred_username": flow.user.username}
    access, expires = sim.issue_token(
        resources[0] if resources else sim.base_url, flow.client_id, extra={**person, "scp": "user_impersonation"}
    )
    issued = int(time.time())
    # The ID token and client_info Entra ID adds for `openid` (MSAL asks for it): azure-identity
    # builds its AuthenticationRecord from them.
    id_token = sim.directory.sign(
        {
            **person,
            "aud": flow.client_id,
            "iss": sim.issuer("2.0"),
            "iat": issued,
            "nbf": issued,
            "exp": issued + 3600,
            "tid": sim.tenant_id,
            "sub": flow.user.oid,
            "ver": "2.0",
        }
    )
    client_info = base64.urlsafe_b64encode(json.dumps({"uid": flow.user.oid, "utid": sim.tenant_id}).encode())
    return json_response(
        200,
        {
            "token_type": "Bearer",
            "scope": " ".join(flow.scopes),
            "expires_in": expires - issued,
            "access_token": access,
            "id_token": id_token,
            "client_info": client_info.rstrip(b"=").decode(),
        },
        {"Cache-Control": "no-store"},
    )
