"""Who is calling: the principal App Service Authentication puts in `X-MS-CLIENT-PRINCIPAL`, and
the app roles each route needs (docs/design.md §3 "Who may call").

App Service Authentication validates the bearer token (Entra ID, the API's app registration) before
the request reaches the app, removes any `X-MS-CLIENT-PRINCIPAL*` header a caller sent, and adds its
own: Base64 JSON `{auth_typ, claims: [{typ, val}], name_typ, role_typ}` (Microsoft Learn, "Work with
user identities in Azure App Service authentication", "Decode the client principal header"). The
app roles of a token arrive as one claim per role, typed `roles` (the token's claim name) or the
principal's `role_typ`; both are read. People get roles by assignment to the API's enterprise app,
Hunter's backend by an application permission — the same `roles` claim either way ("Add app roles
to your application and receive them in the token").

The header is trusted only when the platform says authentication is on (`WEBSITE_AUTH_ENABLED`,
which App Service sets; azure-functions-host `EnvironmentExtensions.IsEasyAuthEnabled`): without
it, anybody could send the header, so every guarded route refuses (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

PUSH = "Leads.Push"  # push leads and read their status (people in the Hunter UI, Hunter's backend)
READ = "Leads.Read"  # read sync statuses only (people who see Hunter's leads but may not push)
REPLAY = "Leads.Replay"  # move poison messages back to the queue (operators)
HEADER = "x-ms-client-principal"
ROLES_CLAIM = "roles"
OBJECT_ID = "http://schemas.microsoft.com/identity/claims/objectidentifier"


@dataclass(frozen=True)
class Principal:
    """A caller App Service Authentication vouched for: object id, display name, app roles."""

    object_id: str
    name: str
    roles: frozenset[str]


@dataclass(frozen=True)
class Refusal:
    """Why a request may not go on: the HTTP status, an error code and a sentence for a person."""

    status: int
    code: str
    message: str


def parse_principal(encoded: str) -> Principal:
    """The principal in an `X-MS-CLIENT-PRINCIPAL` value.

    Raises:
        ValueError: not Base64, not JSON, or not the documented shape.
    """
    try:
        data = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not Base64 JSON: {type(exc).__name__}") from None
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ValueError("no claims array")
    role_types = {ROLES_CLAIM, str(data.get("role_typ") or ROLES_CLAIM)}
    name_type = str(data.get("name_typ") or "name")
    claims = [c for c in data["claims"] if isinstance(c, dict) and isinstance(c.get("typ"), str)]

    def first(*types: str) -> str:
        return next((str(c.get("val", "")) for t in types for c in claims if c["typ"] == t), "")

    roles = frozenset(str(c.get("val", "")) for c in claims if c["typ"] in role_types)
    return Principal(first(OBJECT_ID, "oid"), first("preferred_username", name_type, "name"), roles)


def authorize(
    headers: Mapping[str, str], role: str | tuple[str, ...], environ: Mapping[str, str] | None = None
) -> Principal | Refusal:
    """The caller when they hold `role` (or, given a tuple, any one of those roles), else the
    refusal: 401 with no principal (or when the platform's authentication is off), 403 without the
    role. `headers` are the request's headers (lower-case names, as the Functions host passes them)."""
    roles = (role,) if isinstance(role, str) else role
    environ = os.environ if environ is None else environ
    if environ.get("WEBSITE_AUTH_ENABLED", "").lower() != "true":
        return Refusal(
            401,
            "authentication_not_configured",
            "App Service Authentication is not enabled for this app, so no caller can be identified; "
            "see docs/deploy.md (App Service Authentication)",
        )
    encoded = headers.get(HEADER, "")
    if not encoded:
        return Refusal(401, "unauthenticated", "sign in: this API takes an Entra ID bearer token")
    try:
        principal = parse_principal(encoded)
    except ValueError:
        return Refusal(401, "unauthenticated", "the caller's identity could not be read; sign in again")
    if principal.roles.isdisjoint(roles):
        who = principal.name or principal.object_id or "this caller"
        wanted = " or ".join(f"'{name}'" for name in roles)
        return Refusal(
            403,
            "forbidden",
            f"{who} lacks the app role {wanted} on the Hunter → Dynamics API; "
            "ask an administrator to assign it (docs/runbook.md, app roles)",
        )
    return principal
