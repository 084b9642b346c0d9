"""Function keys, checked the way the Functions host checks them.

From azure-functions-host `src/WebJobs.Script.WebHost/Security/`:
- AuthenticationLevelHandler.GetAuthorizationKeyInfoAsync: the key comes from the
  `x-functions-key` header, else the `code` query parameter (the header wins).
- SecretManager.GetAuthorizationLevelAsync: the master key → Admin; a host function key → Function
  (any function); a function's own key → Function (that function only); anything else → Anonymous.
- AuthUtility.PrincipalHasAuthLevelClaim: an Admin claim satisfies every level; otherwise the claim
  must equal the required level; ANONYMOUS needs nothing.
- FunctionInvocationMiddleware: a request that fails the check gets 401 with an empty body.

Keys come from app settings (`LOCAL_HOST_MASTER_KEY`, `LOCAL_HOST_FUNCTION_KEY` for the host key
named "default", `LOCAL_HOST_FUNCTION_KEY__<function>` for one function's key). Unset keys are
generated at startup and printed in the `host_started` line, so nothing runs keyless.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass, field

ANONYMOUS, FUNCTION, ADMIN = "anonymous", "function", "admin"
HEADER = "x-functions-key"
QUERY = "code"


def _new_key() -> str:
    # The host's keys are 40+ random URL-safe characters ending in "==" (SecretGenerator); the
    # shape does not matter to a caller, only that it is unguessable.
    return secrets.token_urlsafe(40)


@dataclass
class Keys:
    """The host's master key, its host function keys and per-function keys."""

    master: str
    host_keys: dict[str, str]
    function_keys: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, function_names: list[str]) -> Keys:
        """Keys from app settings, generating what is not set."""
        master = os.environ.get("LOCAL_HOST_MASTER_KEY") or _new_key()
        default = os.environ.get("LOCAL_HOST_FUNCTION_KEY") or _new_key()
        per_function: dict[str, dict[str, str]] = {}
        for name in function_names:
            own = os.environ.get(f"LOCAL_HOST_FUNCTION_KEY__{name}")
            if own:
                per_function[name] = {"default": own}
        return cls(master, {"default": default}, per_function)

    def level(self, key: str | None, function_name: str) -> str:
        """The authorization level a presented key grants for `function_name`."""
        if not key:
            return ANONYMOUS
        if hmac.compare_digest(key.encode(), self.master.encode()):
            return ADMIN
        candidates = [*self.host_keys.values(), *self.function_keys.get(function_name, {}).values()]
        if any(hmac.compare_digest(key.encode(), value.encode()) for value in candidates):
            return FUNCTION
        return ANONYMOUS

    def allows(self, required: str, key: str | None, function_name: str) -> bool:
        """True when a request with `key` may call a function declaring `required`."""
        if required == ANONYMOUS:
            return True
        granted = self.level(key, function_name)
        return granted in (ADMIN, required)

    def public(self) -> dict[str, object]:
        """The keys a local caller uses, by kind (for tools and tests; never logged)."""
        return {"master": self.master, "function": self.host_keys["default"]}
