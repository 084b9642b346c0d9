"""Token providers for Dataverse: MSAL client credentials, or a managed identity. One interface.

`MsalTokenProvider` keeps one `ConfidentialClientApplication` (and so its in-memory token cache)
for the life of the process: the second call is answered from the cache, with no request to
Entra ID. When Entra ID refuses the secret (`invalid_client`) and the secret comes from a
refreshable source (Key Vault), the provider re-reads it once — a rotated secret heals without a
restart — and a second refusal is a real `D365AuthenticationError`.

`ManagedIdentityTokenProvider` wraps an azure-identity credential (managed identity in Azure, any
`TokenCredential` in tests): no secret at all; the identity is the Dataverse application user.

Both can `renew(rejected)`: when Dataverse answers 401 to a token that is still valid by its own
expiry (revoked, the application user re-enabled, the secret rotated), the client asks for a
fresh token and resends once. Renewal is single-flight: of many threads holding the same refused
token, the first fetches a new one and the rest are handed that one — one token request per
refusal, however many requests were in flight.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import msal
import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError

from shared.dataverse.errors import D365AuthenticationError, D365RequestNotSentError

logger = logging.getLogger(__name__)

# Entra ID errors that mean "your credentials are wrong", as opposed to "try again later".
_AUTH_ERRORS = {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_scope"}


class TokenProvider(Protocol):
    """Gives a bearer token for Dataverse."""

    mode: str

    def get_token(self, correlation_id: str | None = None) -> str:
        """A valid access token.

        Raises:
            D365AuthenticationError: the credentials were refused.
            D365RequestNotSentError: the token endpoint could not be reached or failed (transient).
        """
        ...

    def renew(self, rejected: str, correlation_id: str | None = None) -> str:
        """A token other than `rejected`, which Dataverse refused: drop it from the cache and
        fetch a new one, unless another thread already has (then that one is returned).

        Raises:
            as `get_token`.
        """
        ...


class SecretSource(Protocol):
    """Where the client secret comes from: a setting, or Key Vault (refreshable)."""

    refreshable: bool

    def get(self) -> str:
        """The current secret."""
        ...

    def refresh(self) -> str:
        """Read the secret again (after a rotation) and return it."""
        ...


class StaticSecret:
    """A secret given in a setting; nothing to refresh."""

    refreshable = False

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The secret."""
        return self._value

    def refresh(self) -> str:
        """The same secret (a setting cannot change under a running process)."""
        return self._value

    def __repr__(self) -> str:
        return "StaticSecret(***)"


class MsalTokenProvider:
    """Client-credentials tokens from Entra ID through MSAL, cached in memory for the process."""

    mode = "client_secret"

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        secret: SecretSource,
        scope: str,
        authority_host: str = "https://login.microsoftonline.com",
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._secret = secret
        self._scope = scope
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._session = session or requests.Session()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._app: msal.ConfidentialClientApplication | None = None
        self._last: str | None = None

    def _application(self, secret: str) -> msal.ConfidentialClientApplication:
        # instance_discovery=False: the authority is taken as configured (sovereign clouds, the
        # local simulator) instead of being checked against login.microsoftonline.com.
        return msal.ConfidentialClientApplication(
            self._client_id,
            client_credential=secret,
            authority=self._authority,
            http_client=self._session,
            timeout=self._timeout,
            instance_discovery=False,
        )

    def get_token(self, correlation_id: str | None = None) -> str:
        """A token for Dataverse, from MSAL's cache when it still holds a valid one.

        Raises:
            D365AuthenticationError: Entra ID refused the client (after one secret refresh).
            D365RequestNotSentError: the token endpoint was unreachable or failed (transient).
        """
        with self._lock:
            return self._get_locked(correlation_id)

    def renew(self, rejected: str, correlation_id: str | None = None) -> str:
        """A fresh token after Dataverse refused `rejected` (see the module docstring).

        Raises:
            as `get_token`.
        """
        with self._lock:
            if self._last is not None and self._last != rejected:
                return self._last  # another thread renewed while this one waited for the lock
            if self._app is not None:
                cache = self._app.token_cache
                for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(entry)
            self._last = None
            return self._get_locked(correlation_id)

    def _get_locked(self, correlation_id: str | None) -> str:
        if self._app is None:
            self._app = self._build(self._secret.get, correlation_id)
        result = self._acquire(self._app, correlation_id)
        if result.get("error") in _AUTH_ERRORS and self._secret.refreshable:
            self._app = self._build(self._secret.refresh, correlation_id)
            logger.warning(
                "d365_secret_refreshed",
                extra={"reason": result.get("error"), "correlation_id": correlation_id},
            )
            result = self._acquire(self._app, correlation_id)
        self._last = self._token_from(result, correlation_id)
        return self._last

    def _build(self, secret: Callable[[], str], correlation_id: str | None) -> msal.ConfidentialClientApplication:
        # MSAL reads the authority's OpenID configuration while it is constructed, so an unknown
        # or unreachable authority host (NameResolutionError) surfaces here, before any token
        # request: the same transient "not sent" as an unreachable token endpoint.
        value = secret()
        try:
            return self._application(value)
        except (requests.RequestException, ValueError) as exc:
            raise self._unreachable(exc, correlation_id) from exc

    def _acquire(self, app: msal.ConfidentialClientApplication, correlation_id: str | None) -> dict[str, Any]:
        try:
            return app.acquire_token_for_client([self._scope]) or {}
        except (requests.RequestException, ValueError) as exc:
            raise self._unreachable(exc, correlation_id) from exc

    @staticmethod
    def _unreachable(exc: Exception, correlation_id: str | None) -> D365RequestNotSentError:
        logger.warning(
            "d365_token_acquisition_failed",
            extra={"error_code": type(exc).__name__, "correlation_id": correlation_id},
        )
        # Chained by the caller: requests' and MSAL's messages name the endpoint, never the form
        # that holds the secret. No token means the Dataverse request was never sent.
        return D365RequestNotSentError(
            f"Entra ID token endpoint unreachable: {type(exc).__name__}", "token_endpoint_unreachable"
        )

    def _token_from(self, result: dict[str, Any], correlation_id: str | None) -> str:
        token = result.get("access_token")
        if token:
            source = result.get("token_source", "identity_provider")
            level = logging.DEBUG if source == "cache" else logging.INFO
            logger.log(
                level,
                "d365_token_acquired",
                extra={"token_source": source, "auth_mode": self.mode, "correlation_id": correlation_id},
            )
            return str(token)
        error = str(result.get("error") or "unknown_error")
        codes = result.get("error_codes") or []
        description = str(result.get("error_description") or "").split("\r\n")[0]
        logger.error(
            "d365_token_acquisition_failed",
            extra={"error_code": error, "aadsts": codes, "correlation_id": correlation_id},
        )
        if error in _AUTH_ERRORS:
            raise D365AuthenticationError(
                f"authentication failed: Entra ID refused the client credentials: {description or error}", 401, error
            )
        raise D365RequestNotSentError(f"Entra ID token request failed: {description or error}", error)


class ManagedIdentityTokenProvider:
    """Tokens from an azure-identity credential (managed identity); no secret anywhere.

    `credential` is a factory: renewing after a refusal makes a new credential, whose cache is
    empty, because azure-identity offers no way to drop one cached token.
    """

    mode = "managed_identity"

    def __init__(self, credential: Callable[[], TokenCredential], scope: str) -> None:
        self._factory = credential
        self._credential: TokenCredential | None = None
        self._scope = scope
        self._lock = threading.Lock()
        self._last: str | None = None

    def get_token(self, correlation_id: str | None = None) -> str:
        """A token for Dataverse (azure-identity caches it until shortly before expiry).

        Raises:
            D365AuthenticationError: the identity endpoint refused.
            D365RequestNotSentError: the identity endpoint was unreachable (transient).
        """
        with self._lock:
            if self._credential is None:
                self._credential = self._factory()
            credential = self._credential
        token = self._fetch(credential, correlation_id)
        with self._lock:
            self._last = token
        return token

    def renew(self, rejected: str, correlation_id: str | None = None) -> str:
        """A fresh token after Dataverse refused `rejected` (single-flight, as `MsalTokenProvider`).

        Raises:
            as `get_token`.
        """
        with self._lock:
            if self._last is not None and self._last != rejected:
                return self._last
            self._credential = self._factory()
            self._last = self._fetch(self._credential, correlation_id)
            return self._last

    def _fetch(self, credential: TokenCredential, correlation_id: str | None) -> str:
        try:
            token = credential.get_token(self._scope).token
        except ClientAuthenticationError as exc:
            logger.error(
                "d365_token_acquisition_failed",
                extra={"auth_mode": self.mode, "error_code": type(exc).__name__, "correlation_id": correlation_id},
            )
            raise D365AuthenticationError(
                f"authentication failed: managed identity token refused: {exc.message}", 401, "managed_identity"
            ) from exc
        except AzureError as exc:
            logger.error(
                "d365_token_acquisition_failed",
                extra={"auth_mode": self.mode, "error_code": type(exc).__name__, "correlation_id": correlation_id},
            )
            raise D365RequestNotSentError(
                f"managed identity endpoint failed: {type(exc).__name__}", "managed_identity"
            ) from exc
        logger.debug("d365_token_acquired", extra={"auth_mode": self.mode, "correlation_id": correlation_id})
        return token
