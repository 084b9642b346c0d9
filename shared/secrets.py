"""The Dataverse client secret from Key Vault, read in code through the app's identity.

`HUNTER_KEYVAULT_URL` + `HUNTER_D365_CLIENT_SECRET_NAME`: the secret is read once with
azure-keyvault-secrets and cached for the process; `refresh()` reads it again after Entra ID
refused it (a rotation), which is what lets a rotated secret heal without a restart. The identity
is the managed identity in Azure (system-assigned, or user-assigned through
`HUNTER_MANAGED_IDENTITY_CLIENT_ID`) and the developer's own credentials elsewhere.
"""

from __future__ import annotations

import logging
import os
import threading
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError

from shared.config import ConfigError
from shared.dataverse.errors import D365RequestNotSentError

logger = logging.getLogger(__name__)
_VAULT_SUFFIXES = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net", ".vault.microsoftazure.de")


def app_credential(client_id: str = "") -> TokenCredential:
    """The app's identity: managed identity where the platform offers one, else developer sign-in.

    Never lets a credential probe the instance-metadata address on a laptop: without
    `IDENTITY_ENDPOINT` (App Service/Functions), managed identity is left out of the chain.
    """
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("MSI_ENDPOINT"):
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(exclude_managed_identity_credential=True)


class KeyVaultSecret:
    """A secret in Key Vault, cached; `refresh()` re-reads it."""

    refreshable = True

    def __init__(self, vault_url: str, name: str, credential: TokenCredential) -> None:
        from azure.keyvault.secrets import SecretClient

        host = urlsplit(vault_url).hostname or ""
        self._name = name
        self._client = SecretClient(vault_url, credential, verify_challenge_resource=host.endswith(_VAULT_SUFFIXES))
        self._lock = threading.Lock()
        self._value: str | None = None

    def get(self) -> str:
        """The secret (read from Key Vault on first use).

        Raises:
            ConfigError: the secret does not exist or is empty.
            D365RequestNotSentError: Key Vault could not be reached (transient; no Dataverse request
                went out).
        """
        with self._lock:
            if self._value is None:
                self._value = self._read()
            return self._value

    def refresh(self) -> str:
        """Read the secret again and return it (raises as `get`)."""
        with self._lock:
            self._value = self._read()
            return self._value

    def _read(self) -> str:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            value = self._client.get_secret(self._name).value
        except ResourceNotFoundError as exc:
            raise ConfigError(
                f"HUNTER_D365_CLIENT_SECRET_NAME: secret '{self._name}' not found in HUNTER_KEYVAULT_URL"
            ) from exc
        except AzureError as exc:
            # Chained: an error from Key Vault never holds the secret's value (only a 200 does),
            # and its message and x-ms-request-id are what Key Vault support asks for.
            logger.error("d365_keyvault_error", extra={"error_code": type(exc).__name__})
            raise D365RequestNotSentError(f"Key Vault unreachable: {type(exc).__name__}", "keyvault") from exc
        if not value:
            raise ConfigError(f"HUNTER_D365_CLIENT_SECRET_NAME: secret '{self._name}' is empty")
        return value

    def __repr__(self) -> str:
        return f"KeyVaultSecret({self._name!r})"
