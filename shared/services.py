"""Builds the process's `Services` from settings: once, lazily, never at import time."""

from __future__ import annotations

import functools
from http.cookiejar import Cookie, DefaultCookiePolicy
from urllib.request import Request

import requests
from requests.adapters import HTTPAdapter

from shared.config import Settings, get_settings
from shared.dataverse import DataverseClient, ManagedIdentityTokenProvider, MsalTokenProvider, TokenProvider
from shared.dataverse.auth import SecretSource, StaticSecret
from shared.pacing import Pacer
from shared.pipeline import Services
from shared.secrets import KeyVaultSecret, app_credential
from shared.state import StateStore
from shared.storage import Queues, state_table


class NoAffinityCookie(DefaultCookiePolicy):
    """Refuses Dataverse's affinity cookie (`ARRAffinity`, `ARRAffinitySameSite`), keeps the rest.

    Dataverse's service-protection limits are per user *per web server*, and by default the
    affinity cookie pins every request of a session to the one server that set it. Microsoft's
    guidance for throughput is to remove it, so that requests spread over the servers (Microsoft
    Learn, "Service protection API limits", "How to maximize throughput" → "Remove the affinity
    cookie": https://learn.microsoft.com/power-apps/developer/data-platform/api-limits#remove-the-affinity-cookie).
    This app holds no server-side session state that the cookie would keep on one server: every
    call is a stateless Web API request. tests/integration/test_simulator_protection.py measures
    what it buys against the multi-server simulator."""

    def set_ok(self, cookie: Cookie, request: Request) -> bool:
        if cookie.name.lower().startswith("arraffinity"):
            return False
        return bool(super().set_ok(cookie, request))


def http_session(pool_size: int = 32) -> requests.Session:
    """A pooled session for Dataverse and Entra ID (pool sized above the host's concurrency) that
    never keeps Dataverse's affinity cookie (`NoAffinityCookie`)."""
    session = requests.Session()
    session.cookies.set_policy(NoAffinityCookie())
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    return session


def token_provider(settings: Settings, session: requests.Session) -> TokenProvider:
    """The token provider `HUNTER_D365_AUTH_MODE` asks for."""
    if settings.auth_mode == "managed_identity":
        client_id = settings.managed_identity_client_id
        return ManagedIdentityTokenProvider(lambda: app_credential(client_id), settings.scope)
    secret: SecretSource
    if settings.keyvault_url:
        secret = KeyVaultSecret(
            settings.keyvault_url, settings.client_secret_name, app_credential(settings.managed_identity_client_id)
        )
    else:
        secret = StaticSecret(settings.client_secret)
    return MsalTokenProvider(
        settings.tenant_id,
        settings.client_id,
        secret,
        settings.scope,
        authority_host=settings.authority_host,
        session=session,
        timeout=settings.http_timeout_seconds,
    )


def build_services(settings: Settings) -> Services:
    """Wire the use case's dependencies (no network until first use)."""
    # Every Dataverse request this process may have in flight, plus token and Key Vault calls.
    session = http_session(max(32, settings.dataverse_concurrency + 4))
    client = DataverseClient(
        settings.base_url,
        token_provider(settings, session),
        session,
        settings.api_version,
        settings.http_timeout_seconds,
        settings.dataverse_concurrency,
        Pacer(share=settings.dataverse_rate_share),
    )
    store = StateStore(state_table(settings), settings.claim_lease_seconds)
    return Services(settings=settings, dataverse=client, state=store, queues=Queues(settings))


@functools.cache
def get_services() -> Services:
    """The process's services (raises `ConfigError` for bad settings)."""
    return build_services(get_settings())
