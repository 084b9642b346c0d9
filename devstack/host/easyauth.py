"""App Service Authentication ("Easy Auth") and the platform's CORS, as they sit in front of a
Flex Consumption (Linux) function app, configured by the same `authsettingsV2` object Bicep
deploys (`infra/app/api.bicep`) and the same CORS origins (`siteConfig.cors.allowedOrigins`).

Sources:
- Order: CORS, then authentication, then the function: azure-functions-host issue #7316
  ("Authentication feature interferes with CORS feature on Linux Consumption", fixed by swapping the
  CORS and Easy Auth middleware) — so a preflight never needs a token, and a 401 still carries the
  CORS headers.
- CORS: azure-functions-host `src/WebJobs.Script.WebHost/Configuration/CorsOptionsSetup.cs`: on Linux
  consumption SKUs one default ASP.NET Core policy from the allowed origins, `AllowAnyHeader`,
  `AllowAnyMethod`, `AllowCredentials` when `supportCredentials`. ASP.NET Core `CorsMiddleware` /
  `CorsService`: a preflight is OPTIONS with `Origin` and `Access-Control-Request-Method`; it is
  answered 204 by the middleware, with `Access-Control-Allow-Origin`/`-Methods`/`-Headers` only when
  the origin is allowed (none otherwise, so the browser refuses); actual requests from an allowed
  origin get `Access-Control-Allow-Origin` and `Vary: Origin`.
- Authentication: Microsoft Learn "Authentication and authorization in Azure App Service" and
  "Configure Microsoft Entra authentication" (`authsettingsV2`: `globalValidation.requireAuthentication`,
  `unauthenticatedClientAction: Return401`, `excludedPaths`; `identityProviders.azureActiveDirectory.
  registration.openIdIssuer` / `clientId`, `validation.allowedAudiences` — the client id is always an
  allowed audience — and `validation.defaultAuthorizationPolicy.allowedApplications`, checked against
  the token's client, `azp` or `appid`). A bearer token is validated against the issuer's OpenID
  metadata: RS256 signature from its JWKS, `iss`, `aud`, `exp`/`nbf`. A request without a valid token
  gets 401 (with `WWW-Authenticate: Bearer`); a client not in `allowedApplications` gets 403.
- Headers: Microsoft Learn "Work with user identities in Azure App Service authentication":
  `X-MS-CLIENT-PRINCIPAL` (Base64 JSON `{auth_typ, claims: [{typ, val}], name_typ, role_typ}`, claims
  after the default claim mapping — e.g. `oid` → `http://schemas.microsoft.com/identity/claims/objectidentifier`,
  one entry per value of a multi-valued claim such as `roles`), `X-MS-CLIENT-PRINCIPAL-ID`, `-NAME`,
  `-IDP`; requests from outside may not set them (they are removed here first).
- `WEBSITE_AUTH_ENABLED=True` is what the platform sets when authentication is on
  (azure-functions-host `EnvironmentExtensions.IsEasyAuthEnabled`); the host sets it for the app.

Gaps (on purpose): no token store, no login/logout routes (`/.auth/*`) and no sessions (an API only
takes bearer tokens here); no `X-MS-TOKEN-AAD-*` headers; the claim mapping covers the claims our
tokens carry (the table below), not all of .NET's inbound map; a 5-minute clock skew as ASP.NET Core's
JWT bearer default (Easy Auth's own skew is not documented).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

logger = logging.getLogger("devstack.host")

SETTINGS = "LOCAL_HOST_AUTH_SETTINGS_V2"
CORS_ORIGINS = "LOCAL_HOST_CORS_ALLOWED_ORIGINS"
CORS_CREDENTIALS = "LOCAL_HOST_CORS_SUPPORT_CREDENTIALS"
INJECTED_PREFIXES = ("x-ms-client-principal", "x-ms-token-")
NAME_TYPE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
# The default inbound claim mapping for the claims our tokens carry (.NET JwtSecurityTokenHandler).
CLAIM_MAP = {
    "oid": "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "tid": "http://schemas.microsoft.com/identity/claims/tenantid",
    "scp": "http://schemas.microsoft.com/identity/claims/scope",
    "sub": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier",
    "email": "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
}
CLOCK_SKEW = 300


@dataclass(frozen=True)
class Answer:
    """A response the front end sends instead of calling the function."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Cors:
    """The platform's CORS policy (the Bicep parameter's origins)."""

    origins: list[str]
    credentials: bool = False

    @classmethod
    def from_env(cls) -> Cors | None:
        raw = os.environ.get(CORS_ORIGINS, "")
        origins = [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]
        if not origins:
            return None
        return cls(origins, os.environ.get(CORS_CREDENTIALS, "").lower() == "true")

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin.rstrip("/") in self.origins

    def preflight(self, method: str, headers: dict[str, str]) -> Answer | None:
        """The answer to a preflight, or None when the request is not one."""
        origin = headers.get("origin")
        wanted = headers.get("access-control-request-method")
        if method != "OPTIONS" or not origin or not wanted:
            return None
        if not self.allows(origin):
            logger.info("host_cors_refused", extra={"origin": origin})
            return Answer(204, {})
        answer = {
            "Access-Control-Allow-Origin": origin if self.credentials or "*" not in self.origins else "*",
            "Access-Control-Allow-Methods": wanted,
            "Vary": "Origin",
        }
        if headers.get("access-control-request-headers"):
            answer["Access-Control-Allow-Headers"] = headers["access-control-request-headers"]
        if self.credentials:
            answer["Access-Control-Allow-Credentials"] = "true"
        return Answer(204, answer)

    def response_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """Headers added to an actual response for the request's origin."""
        origin = headers.get("origin")
        if not origin or not self.allows(origin):
            return {}
        added = {"Access-Control-Allow-Origin": origin if self.credentials or "*" not in self.origins else "*"}
        added["Vary"] = "Origin"
        if self.credentials:
            added["Access-Control-Allow-Credentials"] = "true"
        return added


@dataclass
class EasyAuth:
    """Bearer-token validation and principal headers from an `authsettingsV2` properties object."""

    config: dict[str, Any]
    _keys: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls) -> EasyAuth | None:
        """The configuration in `LOCAL_HOST_AUTH_SETTINGS_V2`, or None when authentication is off.

        Raises:
            ValueError: the setting is not JSON, or lacks the Entra ID issuer or client id.
        """
        raw = os.environ.get(SETTINGS, "")
        if not raw:
            return None
        config = json.loads(raw)
        if not config.get("platform", {}).get("enabled"):
            return None
        auth = cls(config)
        if not auth.issuer or not auth.client_id:
            raise ValueError(
                f"{SETTINGS}: identityProviders.azureActiveDirectory.registration needs openIdIssuer and clientId"
            )
        return auth

    @property
    def _aad(self) -> dict[str, Any]:
        return dict(self.config.get("identityProviders", {}).get("azureActiveDirectory", {}))

    @property
    def issuer(self) -> str:
        return str(self._aad.get("registration", {}).get("openIdIssuer", "")).rstrip("/")

    @property
    def client_id(self) -> str:
        return str(self._aad.get("registration", {}).get("clientId", ""))

    @property
    def audiences(self) -> list[str]:
        given = list(self._aad.get("validation", {}).get("allowedAudiences", []))
        return [*given, self.client_id]

    @property
    def allowed_applications(self) -> list[str]:
        policy = self._aad.get("validation", {}).get("defaultAuthorizationPolicy", {})
        return list(policy.get("allowedApplications", []))

    def _excluded(self, path: str) -> bool:
        paths = self.config.get("globalValidation", {}).get("excludedPaths", [])
        return any(path.rstrip("/").lower() == p.rstrip("/").lower() for p in paths)

    def _signing_key(self, kid: str) -> Any:
        with self._lock:
            if kid not in self._keys:
                # Keys come from the issuer's metadata, fetched on first use and when a new kid appears.
                metadata = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()
                document = requests.get(metadata["jwks_uri"], timeout=10).json()
                for key in document.get("keys", []):
                    self._keys[key["kid"]] = jwt.PyJWK(key).key
            return self._keys.get(kid)

    def _challenge(self) -> dict[str, str]:
        authority = self.issuer.removesuffix("/v2.0")
        return {
            "WWW-Authenticate": f'Bearer realm="local-host" authorization_uri="{authority}/oauth2/v2.0/authorize" resource_id="{self.client_id}"'
        }

    def validate(self, token: str) -> dict[str, Any] | None:
        """The token's claims when it is valid for this app, else None (the reason is logged)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            key = self._signing_key(kid)
            if key is None:
                raise jwt.InvalidTokenError(f"no signing key {kid!r} in the issuer's JWKS")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audiences,
                issuer=self.issuer,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, requests.RequestException, KeyError, ValueError) as exc:
            logger.info("host_auth_token_refused", extra={"reason": f"{type(exc).__name__}: {exc}"})
            return None
        return claims

    def authenticate(self, path: str, headers: dict[str, str]) -> Answer | dict[str, str]:
        """The principal headers to add for this request, or the answer that refuses it."""
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if self._excluded(path):
            return {}
        if scheme.lower() != "bearer" or not token.strip():
            if self.config.get("globalValidation", {}).get("requireAuthentication", True):
                return Answer(401, self._challenge())
            return {}
        claims = self.validate(token.strip())
        if claims is None:
            return Answer(401, self._challenge())
        client = str(claims.get("azp") or claims.get("appid") or "")
        allowed = self.allowed_applications
        if allowed and client not in allowed:
            logger.info("host_auth_client_refused", extra={"client": client})
            return Answer(
                403, {"Content-Type": "text/plain"}, b"You do not have permission to view this directory or page."
            )
        return principal_headers(claims)


def principal_headers(claims: dict[str, Any]) -> dict[str, str]:
    """The `X-MS-CLIENT-PRINCIPAL*` headers App Service adds for a validated token's claims."""
    entries: list[dict[str, str]] = []
    for name, value in claims.items():
        for one in value if isinstance(value, list) else [value]:
            entries.append({"typ": CLAIM_MAP.get(name, name), "val": str(one)})
    principal = {"auth_typ": "aad", "claims": entries, "name_typ": NAME_TYPE, "role_typ": ROLE_TYPE}
    name = claims.get("preferred_username") or claims.get("upn") or claims.get("name") or claims.get("azp") or ""
    return {
        "x-ms-client-principal": base64.b64encode(json.dumps(principal).encode()).decode(),
        "x-ms-client-principal-id": str(claims.get("oid", "")),
        "x-ms-client-principal-name": str(name),
        "x-ms-client-principal-idp": "aad",
    }


def strip_injected(headers: dict[str, str]) -> dict[str, str]:
    """The request's headers without any the platform alone may set."""
    return {k: v for k, v in headers.items() if not k.startswith(INJECTED_PREFIXES)}
