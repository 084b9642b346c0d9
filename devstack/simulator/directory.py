"""The simulated Entra ID tenant's directory: the app registrations of the Hunter UI path (the API
with its app roles and scope, the single-page app, Hunter's backend), the test users and their app
role assignments, the signing key, and the authorization codes and refresh tokens in flight.

What each piece imitates (Microsoft Learn unless noted):
- "Add app roles to your application and receive them in the token": roles assigned to a user or
  to a client application arrive in the access token's `roles` claim (users: delegated tokens;
  applications: client-credentials tokens for `<api>/.default`).
- "Access tokens in the Microsoft identity platform" / "ID token claims reference": v2.0 claims
  `aud` (the API's client id when `accessTokenAcceptedVersion` is 2), `iss`
  (`{authority}/{tenant}/v2.0`), `azp`, `azpacr`, `scp` (space-separated short scope names),
  `roles`, `oid`, `sub`, `tid`, `preferred_username`, `name`, `uti`, `ver`; the ID token's `aud` is
  the client's id and it carries the `nonce` of the request.
- "Microsoft identity platform and OAuth 2.0 authorization code flow": codes live ~10 minutes and
  are single-use; PKCE (S256) binds the code to its verifier; SPA refresh tokens have a fixed
  24-hour lifetime and are replaced by every redemption ("Refresh tokens in the Microsoft identity
  platform").
- Signing: RS256 with a key published in the JWKS document under its `kid` ("OpenID Connect on the
  Microsoft identity platform", "Validate tokens").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

API_CLIENT_ID = "5f0c6a2e-8d1b-4c3a-9e7f-1a2b3c4d5e6f"
API_IDENTIFIER_URI = f"api://{API_CLIENT_ID}"
API_SCOPE = "access_as_user"
SPA_CLIENT_ID = "b7e1d2c3-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
BACKEND_CLIENT_ID = "c4d5e6f7-1a2b-4c3d-9e8f-7a6b5c4d3e2f"
BACKEND_SECRET = "local-backend-secret-change-me"
# An operator's automation (replays the poison queue): an app with both roles, for `make run`'s curl lines.
OPERATOR_CLIENT_ID = "d9e8f7a6-5b4c-4d3e-8f2a-1b0c9d8e7f6a"
OPERATOR_SECRET = "local-operator-secret-change-me"
ROLE_PUSH = "Leads.Push"
ROLE_READ = "Leads.Read"  # read sync statuses only
ROLE_REPLAY = "Leads.Replay"
# The API registration's app roles (its manifest's `appRoles`: value → description), as
# docs/runbook.md tells an administrator to declare them; every one allows users and applications.
API_APP_ROLES = {
    ROLE_READ: "Read the sync status of leads",
    ROLE_PUSH: "Push leads and read their sync status",
    ROLE_REPLAY: "Replay the poison queue",
}
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
CODE_LIFETIME = 600  # seconds; Entra ID's authorization codes live about ten minutes
SPA_REFRESH_LIFETIME = 24 * 3600  # fixed for SPAs ("Refresh tokens…": 24 hours)


@dataclass(frozen=True)
class User:
    """A test user: sign-in name, display name, object id and the API's app roles assigned."""

    username: str
    name: str
    oid: str
    roles: tuple[str, ...]
    note: str


TEST_USERS = (
    User("pusher@hunter.example", "Pia Pusher", "0b5c1e5a-1f0e-4c2a-9a61-5d7e8f9a0b11", (ROLE_PUSH,), "may push"),
    User(
        "viewer@hunter.example",
        "Vic Viewer",
        "0b5c1e5a-1f0e-4c2a-9a61-5d7e8f9a0b22",
        (ROLE_READ,),
        "sees statuses, may not push",
    ),
    User(
        "admin@hunter.example",
        "Ada Admin",
        "0b5c1e5a-1f0e-4c2a-9a61-5d7e8f9a0b33",
        (ROLE_PUSH, ROLE_REPLAY),
        "may push and replay",
    ),
    User("guest@hunter.example", "Gus Guest", "0b5c1e5a-1f0e-4c2a-9a61-5d7e8f9a0b44", (), "no role: gets 403"),
)


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    user: User
    challenge: str
    challenge_method: str
    nonce: str | None
    expires: float
    redeemed: bool = False


@dataclass
class _Refresh:
    client_id: str
    user: User
    scopes: list[str]
    expires: float


@dataclass
class Directory:
    """Registrations, users, the signing key and grants in flight (thread-safe)."""

    tenant_id: str
    spa_redirect_uris: set[str] = field(default_factory=set)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _refresh: dict[str, _Refresh] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = uuid.uuid4().hex[:16]
        # Application permissions (app roles) granted to client applications, by client id.
        self.app_roles = {BACKEND_CLIENT_ID: (ROLE_PUSH,), OPERATOR_CLIENT_ID: (ROLE_PUSH, ROLE_REPLAY)}

    # -- keys ----------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The JWKS document: the public half of the signing key under its `kid`."""
        numbers = self.key.public_key().public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": b64(numbers.n), "e": b64(numbers.e)}
            ]
        }

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT of `claims`, RS256 with the published key."""
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})

    def public_key(self) -> Any:
        """The public key, for the simulator's own resource checks."""
        return self.key.public_key()

    # -- registrations and users ---------------------------------------------------------------

    def user(self, username: str) -> User | None:
        """The test user signing in as `username` (case-insensitive), or None."""
        return next((u for u in TEST_USERS if u.username.casefold() == username.strip().casefold()), None)

    def spa_redirect_ok(self, client_id: str, redirect_uri: str) -> bool:
        """True when `redirect_uri` is registered as a single-page-application redirect of `client_id`."""
        with self._lock:
            return client_id == SPA_CLIENT_ID and redirect_uri in self.spa_redirect_uris

    def add_spa_redirect(self, redirect_uri: str) -> list[str]:
        """Register another SPA redirect URI (what the portal's "Single-page application" platform holds)."""
        with self._lock:
            self.spa_redirect_uris.add(redirect_uri)
            return sorted(self.spa_redirect_uris)

    # -- authorization codes -------------------------------------------------------------------

    def new_code(
        self,
        client_id: str,
        redirect_uri: str,
        scopes: list[str],
        user: User,
        challenge: str,
        method: str,
        nonce: str | None,
    ) -> str:
        """A single-use authorization code bound to the request and its PKCE challenge."""
        code = secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = _Code(
                client_id, redirect_uri, scopes, user, challenge, method, nonce, time.time() + CODE_LIFETIME
            )
        return code

    def redeem_code(self, code: str, client_id: str, redirect_uri: str, verifier: str) -> _Code | str:
        """The code's grant, or the refusal as `"<error>|<AADSTS number>|<description>"`."""
        with self._lock:
            grant = self._codes.get(code)
            if grant is None or grant.client_id != client_id:
                return "invalid_grant|9002313|Invalid request. Request is malformed or invalid."
            if grant.redeemed:
                return "invalid_grant|54005|OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token."
            if grant.expires < time.time():
                return "invalid_grant|70008|The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource."
            if grant.redirect_uri != redirect_uri:
                return "invalid_grant|50148|The redirect_uri doesn't match the one used in the authorization request."
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            expected = digest if grant.challenge_method == "S256" else verifier
            if not verifier or not hmac.compare_digest(expected, grant.challenge):
                return "invalid_grant|501481|The Code_Verifier does not match the code_challenge supplied in the authorization request."
            grant.redeemed = True
            return grant

    # -- refresh tokens ------------------------------------------------------------------------

    def new_refresh(self, client_id: str, user: User, scopes: list[str]) -> str:
        """An opaque refresh token with the SPA's fixed lifetime."""
        token = "0.sim." + secrets.token_urlsafe(64)
        with self._lock:
            self._refresh[token] = _Refresh(client_id, user, scopes, time.time() + SPA_REFRESH_LIFETIME)
        return token

    def redeem_refresh(self, token: str, client_id: str) -> _Refresh | str:
        """The refresh token's grant, or the refusal as in `redeem_code`. A redeemed token stays valid
        until it expires (Entra ID does not make refresh tokens single-use; each answer carries a new
        one, which MSAL keeps), so concurrent silent requests do not race."""
        with self._lock:
            grant = self._refresh.get(token)
        if grant is None or grant.client_id != client_id:
            return "invalid_grant|9002313|Invalid request. Request is malformed or invalid."
        if grant.expires < time.time():
            return (
                "invalid_grant|700084|The refresh token was issued to a single page app (SPA), and therefore has a "
                "fixed, limited lifetime of 1.00:00:00, which cannot be extended."
            )
        return grant

    def expire_refresh_tokens(self) -> int:
        """Make every outstanding refresh token expired (tests of the re-sign-in path)."""
        with self._lock:
            for grant in self._refresh.values():
                grant.expires = 0
            return len(self._refresh)
