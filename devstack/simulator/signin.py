"""Entra ID as a sign-in provider for a browser: `/authorize` with a minimal sign-in page of test
users, the authorization-code + PKCE and refresh-token grants of the token endpoint, the JWKS
document, sign-out, and the CORS a single-page app needs on the token endpoint — enough for
Microsoft's `@azure/msal-browser` to run against it unmodified (tests/browser).

Read from (Microsoft Learn unless noted):
- "Microsoft identity platform and OAuth 2.0 authorization code flow": the request parameters
  (`client_id`, `response_type=code`, `redirect_uri`, `scope`, `response_mode` query|fragment,
  `state`, `nonce`, `code_challenge`, `code_challenge_method`, `prompt`), the successful answer
  (`code`, `state`, `client_info` when asked for with `client_info=1`, `session_state`), errors
  sent back to the redirect URI (`error`, `error_description`, `state`), the redemption
  (`grant_type=authorization_code`, `code`, `redirect_uri`, `code_verifier`) and its answer
  (`token_type`, `scope`, `expires_in`, `ext_expires_in`, `access_token`, `refresh_token`,
  `id_token`, `client_info`); refresh (`grant_type=refresh_token`) answers with a new refresh token.
- "Single-page application: App registration" / AADSTS9002326 and AADSTS9002327: redirect URIs of
  the SPA platform may redeem codes only cross-origin (an `Origin` header), others never; PKCE is
  required for them (AADSTS9002325). Unknown redirect URI: AADSTS50011 shown on Entra's own page,
  never sent to the unregistered URI.
- CORS: the token endpoint answers a browser with `Access-Control-Allow-Origin` (Entra ID sends
  `*` on login.microsoftonline.com token responses, as seen in a browser's network panel; not a
  documented contract), and answers preflights; `/authorize` is a navigation, not a CORS request.
- msal-browser 5.30.0 (package.json pins it), `lib/msal-browser.js`: `ResponseHandler`
  `handleServerTokenResponse` compares the ID token's `nonce` with the request's and builds the
  account from `client_info` (`uid`.`utid`); the authority's metadata comes from
  `{authority}/v2.0/.well-known/openid-configuration` when the host is in `knownAuthorities`.
"""

from __future__ import annotations

import base64
import html
import json
import secrets
import uuid
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode

from devstack.simulator.aadsts import error_response
from devstack.simulator.directory import (
    API_CLIENT_ID,
    API_IDENTIFIER_URI,
    API_SCOPE,
    GRAPH_APP_ID,
    SPA_CLIENT_ID,
    TEST_USERS,
    User,
)
from devstack.simulator.state import now
from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState as Simulator

OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}


def cors(request: Request, response: Response) -> Response:
    """Add the token endpoint's CORS answer when a browser asked (an `Origin` header)."""
    if request.header("Origin"):
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def preflight(sim: Simulator, request: Request) -> Response:
    """OPTIONS on the token endpoint: allow POST with the headers the browser asks for."""
    headers = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Max-Age": "86400",
    }
    if request.header("Access-Control-Request-Headers"):
        headers["Access-Control-Allow-Headers"] = str(request.header("Access-Control-Request-Headers"))
    return Response(204, b"", headers)


def jwks(sim: Simulator, request: Request) -> Response:
    """GET /{tenant}/discovery/v2.0/keys"""
    return json_response(200, sim.directory.jwks(), {"Access-Control-Allow-Origin": "*"})


def _page(status: int, title: str, body: str) -> Response:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem}"
        "button{display:block;width:100%;text-align:left;margin:.5rem 0;padding:.75rem;font:inherit;cursor:pointer}"
        "small{color:#555}</style></head><body>"
        f"{body}</body></html>"
    )
    return Response(
        status, document.encode(), {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
    )


def _stamp() -> str:
    return f"Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()}"


def _error_page(code: int, text: str) -> Response:
    return _page(
        400,
        "Sign in",
        f"<h1>Sorry, but we're having trouble signing you in.</h1><p>AADSTS{code}: {html.escape(text)}</p>",
    )


def _redirect(uri: str, params: dict[str, str], mode: str) -> Response:
    separator = "#" if mode == "fragment" else ("&" if "?" in uri else "?")
    return Response(302, b"", {"Location": f"{uri}{separator}{urlencode(params)}", "Cache-Control": "no-store"})


def _check_authorize(sim: Simulator, query: dict[str, str]) -> Response | None:
    """The refusal of an authorization request, or None when it may go on to the sign-in page."""
    client_id = query.get("client_id", "")
    redirect_uri = query.get("redirect_uri", "")
    if client_id != SPA_CLIENT_ID:
        return _error_page(700016, f"Application with identifier '{client_id}' was not found in the directory.")
    if not sim.directory.spa_redirect_ok(client_id, redirect_uri):
        return _error_page(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs "
            f"configured for the application '{client_id}'.",
        )
    mode = query.get("response_mode", "query")
    state = {"state": query["state"]} if "state" in query else {}
    if query.get("response_type") != "code":
        return _redirect(
            redirect_uri,
            {
                "error": "unsupported_response_type",
                "error_description": "AADSTS700054: response_type is not enabled for the application.",
                **state,
            },
            mode,
        )
    if not query.get("code_challenge") or query.get("code_challenge_method", "plain") != "S256":
        return _redirect(
            redirect_uri,
            {
                "error": "invalid_request",
                "error_description": "AADSTS9002325: Proof Key for Code Exchange is required for cross-origin authorization code redemption.",
                **state,
            },
            mode,
        )
    if query.get("prompt") == "none":
        # No browser session is kept: silent sign-in always needs interaction (MSAL falls back).
        return _redirect(
            redirect_uri,
            {
                "error": "login_required",
                "error_description": f"AADSTS50058: A silent sign-in request was sent but no user is signed in. {_stamp()}",
                **state,
            },
            mode,
        )
    return None


def authorize(sim: Simulator, request: Request) -> Response:
    """GET shows the sign-in page (one button per test user); POST signs the chosen user in and
    redirects to the app with a code."""
    if request.method == "POST":
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        query = {k: v[0] for k, v in parse_qs(form.get("request", "")).items()}
    else:
        form, query = {}, request.query
    refused = _check_authorize(sim, query)
    if refused is not None:
        return refused
    if request.method != "POST":
        return _sign_in_page(request.path, query)
    user = sim.directory.user(form.get("username", ""))
    if user is None:
        return _sign_in_page(request.path, query, "AADSTS50034: The user account does not exist in this directory.")
    scopes = query.get("scope", "").split()
    code = sim.directory.new_code(
        query["client_id"],
        query["redirect_uri"],
        scopes,
        user,
        query["code_challenge"],
        query.get("code_challenge_method", "S256"),
        query.get("nonce"),
    )
    answer = {"code": code}
    if query.get("client_info") == "1":
        answer["client_info"] = _client_info(sim, user)
    if "state" in query:
        answer["state"] = query["state"]
    answer["session_state"] = str(uuid.uuid4())
    return _redirect(query["redirect_uri"], answer, query.get("response_mode", "query"))


def _sign_in_page(path: str, query: dict[str, str], error: str = "") -> Response:
    buttons = "".join(
        f"<button type='submit' name='username' value='{html.escape(u.username)}'>"
        f"<strong>{html.escape(u.name)}</strong> &lt;{html.escape(u.username)}&gt;<br>"
        f"<small>roles: {html.escape(', '.join(u.roles) or 'none')} — {html.escape(u.note)}</small></button>"
        for u in TEST_USERS
    )
    warning = f"<p role='alert'>{html.escape(error)}</p>" if error else ""
    body = (
        "<h1>Sign in</h1><p>Local Entra ID simulator: pick a test user (no password).</p>"
        f"{warning}<form method='post' action='{html.escape(path)}'>"
        f"<input type='hidden' name='request' value='{html.escape(urlencode(query))}'>{buttons}</form>"
    )
    return _page(200, "Sign in to your account", body)


def logout(sim: Simulator, request: Request) -> Response:
    """GET /{tenant}/oauth2/v2.0/logout: back to `post_logout_redirect_uri` when given."""
    target = request.query.get("post_logout_redirect_uri")
    if target:
        return Response(302, b"", {"Location": target})
    return _page(200, "Signed out", "<h1>You signed out of your account</h1>")


def _client_info(sim: Simulator, user: User) -> str:
    raw = json.dumps({"uid": user.oid, "utid": sim.tenant_id}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _refusal(sim: Simulator, request: Request, reason: str) -> Response:
    error, number, description = reason.split("|", 2)
    return cors(request, error_response(sim, request, 400, error, int(number), description))


def redeem(sim: Simulator, request: Request, form: dict[str, str]) -> Response:
    """The token endpoint's `authorization_code` and `refresh_token` grants for the SPA."""
    client_id = form.get("client_id", "")
    origin = request.header("Origin")
    if form["grant_type"] == "authorization_code":
        redirect_uri = form.get("redirect_uri", "")
        spa = sim.directory.spa_redirect_ok(client_id, redirect_uri)
        if origin and not spa:
            return _refusal(
                sim,
                request,
                "invalid_request|9002326|Cross-origin token redemption is permitted only for the "
                f"'Single-Page Application' client-type. Request origin: '{origin}'.",
            )
        if spa and not origin:
            return _refusal(
                sim,
                request,
                "invalid_request|9002327|Tokens issued for the 'Single-Page Application' client-type may only be "
                "redeemed via cross-origin requests.",
            )
        grant = sim.directory.redeem_code(form.get("code", ""), client_id, redirect_uri, form.get("code_verifier", ""))
        if isinstance(grant, str):
            return _refusal(sim, request, grant)
        user, scopes, nonce = grant.user, grant.scopes, grant.nonce
        requested = form.get("scope", "").split() or scopes
    else:
        if not origin:
            return _refusal(
                sim,
                request,
                "invalid_request|9002327|Tokens issued for the 'Single-Page Application' client-type may only be "
                "redeemed via cross-origin requests.",
            )
        refreshed = sim.directory.redeem_refresh(form.get("refresh_token", ""), client_id)
        if isinstance(refreshed, str):
            return _refusal(sim, request, refreshed)
        user, scopes, nonce = refreshed.user, refreshed.scopes, None
        requested = form.get("scope", "").split() or scopes
    return cors(request, _tokens(sim, form, client_id, user, requested, nonce))


def _tokens(
    sim: Simulator, form: dict[str, str], client_id: str, user: User, requested: list[str], nonce: str | None
) -> Response:
    resource = [s for s in requested if s not in OIDC_SCOPES]
    api = [s for s in resource if s.startswith(f"{API_IDENTIFIER_URI}/")]
    if resource and len(api) != len(resource):
        return json_response(
            400,
            {
                "error": "invalid_scope",
                "error_description": f"AADSTS70011: The provided value for scope {' '.join(resource)} is not valid.",
            },
        )
    person = {
        "name": user.name,
        "preferred_username": user.username,
        "oid": user.oid,
        "sub": base64.urlsafe_b64encode(f"{user.oid}:{client_id}".encode()).rstrip(b"=").decode()[:43],
        "azpacr": "0",
    }
    if api:
        # The API's v2.0 access token: `aud` is its client id, `scp` the short scope names, `roles`
        # the app roles assigned to the user (no claim at all when none are).
        extra: dict[str, object] = {**person, "scp": API_SCOPE}
        if user.roles:
            extra["roles"] = list(user.roles)
        access, expires = sim.issue_token(API_CLIENT_ID, client_id, extra=extra)
        granted = f"{API_IDENTIFIER_URI}/{API_SCOPE}"
    else:
        access, expires = sim.issue_token(
            GRAPH_APP_ID, client_id, extra={**person, "scp": "openid profile email User.Read"}
        )
        granted = "openid profile email User.Read"
    answer: dict[str, object] = {
        "token_type": "Bearer",
        "scope": granted,
        "expires_in": expires - int(now()),
        "ext_expires_in": expires - int(now()),
        "access_token": access,
    }
    if "offline_access" in requested:
        answer["refresh_token"] = sim.directory.new_refresh(client_id, user, requested)
    if "openid" in requested:
        answer["id_token"] = _id_token(sim, client_id, user, person, nonce)
    if form.get("client_info") == "1":
        answer["client_info"] = _client_info(sim, user)
    return json_response(200, answer, {"Cache-Control": "no-store"})


def _id_token(sim: Simulator, client_id: str, user: User, person: dict[str, str], nonce: str | None) -> str:
    issued = int(now())
    claims: dict[str, object] = {
        "aud": client_id,
        "iss": sim.issuer("2.0"),
        "iat": issued,
        "nbf": issued,
        "exp": issued + 3600,
        "tid": sim.tenant_id,
        "ver": "2.0",
        "uti": secrets.token_urlsafe(16),
        **{k: v for k, v in person.items() if k != "azpacr"},
    }
    if nonce:
        claims["nonce"] = nonce
    return sim.directory.sign(claims)
