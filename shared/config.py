"""Settings: one frozen dataclass built from the environment, once, lazily.

Every setting the app reads is named here (and documented in `local.settings.json.example`).
A missing or malformed setting raises `ConfigError` whose message starts with the setting's name;
a secret's value is never part of a message.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from shared.concurrency import plan_from_env
from shared.config_error import ConfigError

__all__ = ["AUTH_MODES", "ConfigError", "Settings", "get_settings", "is_unresolved_keyvault_reference"]

AUTH_MODES = ("client_secret", "managed_identity")
_KEYVAULT_REFERENCE = re.compile(r"^\s*@Microsoft\.KeyVault\(", re.IGNORECASE)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false")


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum:g}")
    return value


# The percentage of one application user's window limits the app uses in all, by default: as the
# concurrency budget does (shared/concurrency.py), it leaves a little for what else signs in as the
# same user (the smoke test, an operator's script). A percentage, so Bicep can pass it (no floats).
DEFAULT_RATE_BUDGET_PERCENT = 95.0


def _rate_budget(env: Mapping[str, str]) -> float:
    value = _number(env, "HUNTER_D365_RATE_BUDGET_PERCENT", DEFAULT_RATE_BUDGET_PERCENT, minimum=1.0)
    if value > 100:
        raise ConfigError("HUNTER_D365_RATE_BUDGET_PERCENT: a percentage of one user's limits, at most 100")
    return value / 100


def _https_url(env: Mapping[str, str], name: str, default: str = "") -> str:
    raw = env.get(name, default).strip().rstrip("/")
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"{name}: must be an https:// URL")
    return raw


def is_unresolved_keyvault_reference(value: str) -> bool:
    """True when an app setting still holds the literal `@Microsoft.KeyVault(...)` text.

    The platform leaves the reference text in place when it cannot resolve it (no access, wrong
    name); sending that text to Entra ID as a secret would only produce a confusing auth failure.
    """
    return bool(_KEYVAULT_REFERENCE.match(value))


@dataclass(frozen=True)
class Settings:
    """The app's configuration. Build with `Settings.from_env`; read with `get_settings()`."""

    enabled: bool
    base_url: str
    tenant_id: str
    client_id: str
    api_version: str
    auth_mode: str
    client_secret: str = field(repr=False)
    keyvault_url: str
    client_secret_name: str
    managed_identity_client_id: str
    authority_host: str
    domain_key: bool
    custom_fields: bool
    retry_base_seconds: float
    retry_cap_seconds: float
    retry_jitter_seconds: float
    max_attempts: int
    # How long service protection (429s, and this process waiting one out) may keep one message
    # waiting before it is given up (HUNTER_D365_MAX_THROTTLED_SECONDS; docs/design.md §6).
    max_throttled_seconds: float
    claim_lease_seconds: float
    claim_retry_seconds: float
    verify_ttl_seconds: float
    http_timeout_seconds: float
    dataverse_concurrency: int
    queue_name: str
    poison_queue_name: str
    results_queue_name: str
    state_table_name: str
    storage_connection: str = field(repr=False)
    storage_queue_service_uri: str
    storage_table_service_uri: str
    storage_client_id: str
    # Leads per bulk message (HUNTER_D365_BULK_SIZE): push-leads packs its leads into messages of
    # this many, each pushed with one lookup and one CreateMultiple (bulk-operations.md recommends
    # 100-1000 per call on standard tables); 1 sends one single-lead message per lead instead.
    bulk_size: int = 100
    # The fraction of each Dataverse window limit (requests, execution time) this process may use
    # (shared/pacing.py): HUNTER_D365_RATE_BUDGET_PERCENT, the share of one application user's limits
    # the whole app uses, divided by HUNTER_D365_MAX_INSTANCES, the instances that share it.
    dataverse_rate_share: float = 0.95
    # The host's worker threads (PYTHON_THREADPOOL_THREAD_COUNT, a platform setting Bicep sets to 16;
    # unset, the Python worker's own default min(32, cpus + 4)): sizes the Storage pools.
    worker_threads: int = 16

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build settings from a mapping of app settings.

        Raises:
            ConfigError: a required setting is missing or a value is malformed.
        """
        auth_mode = env.get("HUNTER_D365_AUTH_MODE", "client_secret").strip() or "client_secret"
        if auth_mode not in AUTH_MODES:
            raise ConfigError(f"HUNTER_D365_AUTH_MODE: must be one of {', '.join(AUTH_MODES)}")
        secret = env.get("HUNTER_D365_CLIENT_SECRET", "")
        if secret and is_unresolved_keyvault_reference(secret):
            raise ConfigError(
                "HUNTER_D365_CLIENT_SECRET: holds an unresolved Key Vault reference; check the app's "
                "identity has 'Key Vault Secrets User' on the vault and the secret name is right"
            )

        queue = env.get("HUNTER_D365_QUEUE", "d365-lead-push").strip() or "d365-lead-push"
        settings = cls(
            enabled=_flag(env, "HUNTER_D365_ENABLED", True),
            base_url=_https_url(env, "HUNTER_D365_BASE_URL"),
            tenant_id=env.get("HUNTER_D365_TENANT_ID", "").strip(),
            client_id=env.get("HUNTER_D365_CLIENT_ID", "").strip(),
            api_version=env.get("HUNTER_D365_API_VERSION", "v9.2").strip() or "v9.2",
            auth_mode=auth_mode,
            client_secret=secret,
            keyvault_url=_https_url(env, "HUNTER_KEYVAULT_URL"),
            client_secret_name=env.get("HUNTER_D365_CLIENT_SECRET_NAME", "").strip(),
            managed_identity_client_id=env.get("HUNTER_MANAGED_IDENTITY_CLIENT_ID", "").strip(),
            authority_host=_https_url(env, "HUNTER_D365_AUTHORITY_HOST", "https://login.microsoftonline.com"),
            domain_key=_flag(env, "HUNTER_D365_DOMAIN_KEY", False),
            custom_fields=_flag(env, "HUNTER_D365_CUSTOM_FIELDS", True),
            retry_base_seconds=_number(env, "HUNTER_D365_RETRY_BASE_SECONDS", 60.0),
            retry_cap_seconds=_number(env, "HUNTER_D365_RETRY_CAP_SECONDS", 3600.0),
            retry_jitter_seconds=_number(env, "HUNTER_D365_RETRY_JITTER_SECONDS", 10.0),
            max_attempts=int(_number(env, "HUNTER_D365_MAX_ATTEMPTS", 6.0, minimum=1.0)),
            max_throttled_seconds=_number(env, "HUNTER_D365_MAX_THROTTLED_SECONDS", 21600.0),
            claim_lease_seconds=_number(env, "HUNTER_D365_CLAIM_LEASE_SECONDS", 120.0, 1.0),
            claim_retry_seconds=_number(env, "HUNTER_D365_CLAIM_RETRY_SECONDS", 5.0),
            verify_ttl_seconds=_number(env, "HUNTER_D365_VERIFY_TTL_SECONDS", 3600.0),
            http_timeout_seconds=_number(env, "HUNTER_D365_HTTP_TIMEOUT_SECONDS", 30.0, 0.1),
            dataverse_concurrency=plan_from_env(env).per_instance,
            queue_name=queue,
            poison_queue_name=f"{queue}-poison",
            results_queue_name=env.get("HUNTER_D365_RESULTS_QUEUE", "d365-lead-push-results").strip()
            or "d365-lead-push-results",
            state_table_name=env.get("HUNTER_D365_STATE_TABLE", "d365leadsync").strip() or "d365leadsync",
            storage_connection=env.get("AzureWebJobsStorage", "").strip(),
            storage_queue_service_uri=env.get("AzureWebJobsStorage__queueServiceUri", "").strip(),
            storage_table_service_uri=env.get("AzureWebJobsStorage__tableServiceUri", "").strip(),
            storage_client_id=env.get("AzureWebJobsStorage__clientId", "").strip(),
            bulk_size=int(_number(env, "HUNTER_D365_BULK_SIZE", 100.0, minimum=1.0)),
            dataverse_rate_share=_rate_budget(env) / plan_from_env(env).max_instances,
            worker_threads=int(
                _number(env, "PYTHON_THREADPOOL_THREAD_COUNT", float(min(32, (os.cpu_count() or 1) + 4)), minimum=1.0)
            ),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check that the settings hang together.

        Raises:
            ConfigError: naming the first setting that is missing or inconsistent.
        """
        if not self.base_url:
            raise ConfigError("HUNTER_D365_BASE_URL: required (https://<org>.crm.dynamics.com)")
        if self.auth_mode == "client_secret":
            for name, value in (
                ("HUNTER_D365_TENANT_ID", self.tenant_id),
                ("HUNTER_D365_CLIENT_ID", self.client_id),
            ):
                if not value:
                    raise ConfigError(f"{name}: required when HUNTER_D365_AUTH_MODE=client_secret")
            if not self.client_secret and not (self.keyvault_url and self.client_secret_name):
                raise ConfigError(
                    "HUNTER_D365_CLIENT_SECRET: required when HUNTER_D365_AUTH_MODE=client_secret, "
                    "unless HUNTER_KEYVAULT_URL and HUNTER_D365_CLIENT_SECRET_NAME are set"
                )
        if self.keyvault_url and not self.client_secret_name:
            raise ConfigError("HUNTER_D365_CLIENT_SECRET_NAME: required with HUNTER_KEYVAULT_URL")
        if self.domain_key and not self.custom_fields:
            raise ConfigError(
                "HUNTER_D365_DOMAIN_KEY: the alternate key is on the hnt_domain column, so it "
                "needs HUNTER_D365_CUSTOM_FIELDS=true"
            )
        if not self.storage_connection and not self.storage_queue_service_uri:
            raise ConfigError(
                "AzureWebJobsStorage: required (a connection string, or "
                "AzureWebJobsStorage__queueServiceUri and __tableServiceUri for identity access)"
            )
        if self.bulk_size > 1000:
            raise ConfigError("HUNTER_D365_BULK_SIZE: at most 1000 leads per CreateMultiple (bulk-operations.md)")
        if self.storage_queue_service_uri and not self.storage_table_service_uri:
            raise ConfigError("AzureWebJobsStorage__tableServiceUri: required with __queueServiceUri")

    @property
    def scope(self) -> str:
        """The Entra ID scope for Dataverse: the org URL with /.default."""
        return f"{self.base_url}/.default"

    def lead_url(self, lead_id: str) -> str:
        """The deep link that opens a lead in Dynamics (etn=lead; entity type code 1 is account)."""
        return f"{self.base_url}/main.aspx?pagetype=entityrecord&etn=lead&id={lead_id}"


@functools.cache
def get_settings() -> Settings:
    """The process's settings, built from `os.environ` on first use.

    Raises:
        ConfigError: see `Settings.from_env`.
    """
    return Settings.from_env(os.environ)
