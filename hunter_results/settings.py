"""The consumer's settings, from the environment (or any mapping), with the seed's names as defaults.

| setting | default |
|---|---|
| `HUNTER_RESULTS_DATABASE_URL` | — (required): libpq URI or `key=value` string of Hunter's database |
| `HUNTER_RESULTS_TABLE` | `companies` (`schema.table` allowed) |
| `HUNTER_RESULTS_DOMAIN_COLUMN` | `domain` |
| `HUNTER_RESULTS_LEAD_ID_COLUMN` | `d365_lead_id` |
| `HUNTER_RESULTS_STATUS_COLUMN` | `d365_sync_status` |
| `HUNTER_RESULTS_LAST_AT_COLUMN` | `d365_sync_last_at` |
| `HUNTER_RESULTS_ERROR_COLUMN` | `d365_sync_error` |
| `HUNTER_RESULTS_ERROR_MAX_LENGTH` | 1000 |
| `HUNTER_D365_RESULTS_QUEUE` | `d365-lead-push-results` (the app's own setting); poison: `<queue>-poison` |
| `HUNTER_RESULTS_STORAGE_CONNECTION` | `AzureWebJobsStorage`: the prefix of the storage settings below |
| `<prefix>` | a connection string (Azurite locally), or: |
| `<prefix>__queueServiceUri` | `https://<account>.queue.core.windows.net`, reached by identity |
| `<prefix>__credential`, `<prefix>__clientId` | `managedidentity` (+ a user-assigned identity's client id); otherwise `DefaultAzureCredential` |
| `HUNTER_RESULTS_BATCH_SIZE` | 32 (1–32 messages per receive) |
| `HUNTER_RESULTS_VISIBILITY_TIMEOUT_SECONDS` | 60 |
| `HUNTER_RESULTS_POLL_MIN_SECONDS`, `HUNTER_RESULTS_POLL_MAX_SECONDS` | 1, 30 (idle backoff) |
| `HUNTER_RESULTS_MAX_CLOCK_SKEW_SECONDS` | 300 (0–86400): an outcome whose `at` is further ahead of this machine's clock is refused to the poison queue |

Identifiers are validated here and quoted by psycopg when the SQL is built (`table.py`); a setting
that is missing or malformed raises `ConfigError` naming it, never echoing the database URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_QUEUE = "d365-lead-push-results"
# Anything printable but a NUL is a valid quoted PostgreSQL identifier; the limit is NAMEDATALEN-1.
_IDENTIFIER = re.compile(r"[^\x00-\x1f\x7f]{1,63}")
_QUEUE = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,56}")  # leaves room for "-poison" (63 max)


class ConfigError(Exception):
    """A setting is missing or invalid; the message starts with its name."""


def _identifier(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _IDENTIFIER.fullmatch(value):
        raise ConfigError(f"{name}: must be 1-63 characters with no control characters")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be from {low:g} to {high:g}")
    return value


@dataclass(frozen=True)
class ConsumerSettings:
    """Where the outcomes come from and which row and columns they go to."""

    database_url: str = field(repr=False)
    table: tuple[str, ...] = ("companies",)
    domain_column: str = "domain"
    lead_id_column: str = "d365_lead_id"
    status_column: str = "d365_sync_status"
    last_at_column: str = "d365_sync_last_at"
    error_column: str = "d365_sync_error"
    error_max_length: int = 1000
    queue_name: str = DEFAULT_QUEUE
    storage_connection: str = field(default="", repr=False)
    queue_service_uri: str = ""
    credential: str = ""
    client_id: str = ""
    batch_size: int = 32
    visibility_timeout: int = 60
    poll_min_seconds: float = 1.0
    poll_max_seconds: float = 30.0
    # How far an outcome's `at` may lie ahead of this clock (the app's and this machine's clocks
    # differ a little). An outcome dated later would win every ordering comparison from then on
    # and freeze Hunter's row, so it is refused instead.
    max_clock_skew_seconds: float = 300.0

    @property
    def poison_queue_name(self) -> str:
        """The consumer's own poison queue: `<results queue>-poison`."""
        return f"{self.queue_name}-poison"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsumerSettings:
        """Build the settings from `env` (default: `os.environ`).

        Raises:
            ConfigError: a required setting is missing or a value is malformed.
        """
        env = os.environ if env is None else env
        database_url = env.get("HUNTER_RESULTS_DATABASE_URL", "").strip()
        if not database_url:
            raise ConfigError("HUNTER_RESULTS_DATABASE_URL: required (postgresql://user@host:5432/hunter)")
        table_text = env.get("HUNTER_RESULTS_TABLE", "").strip() or "companies"
        table = tuple(part.strip() for part in table_text.split("."))
        if len(table) > 2 or not all(_IDENTIFIER.fullmatch(part) for part in table):
            raise ConfigError("HUNTER_RESULTS_TABLE: must be `table` or `schema.table`, 1-63 characters each")
        queue = env.get("HUNTER_D365_RESULTS_QUEUE", "").strip() or DEFAULT_QUEUE
        if not _QUEUE.fullmatch(queue):
            raise ConfigError("HUNTER_D365_RESULTS_QUEUE: must be a storage queue name of 3-56 characters")
        prefix = env.get("HUNTER_RESULTS_STORAGE_CONNECTION", "").strip() or "AzureWebJobsStorage"
        connection = env.get(prefix, "").strip()
        service_uri = env.get(f"{prefix}__queueServiceUri", "").strip().rstrip("/")
        if not connection and not service_uri:
            raise ConfigError(
                f"{prefix}: required (a connection string, or {prefix}__queueServiceUri for access by identity)"
            )
        if service_uri and not service_uri.startswith("https://"):
            raise ConfigError(f"{prefix}__queueServiceUri: must be an https:// URL")
        poll_min = _number(env, "HUNTER_RESULTS_POLL_MIN_SECONDS", 1.0, 0.01, 3600)
        return cls(
            database_url=database_url,
            table=table,
            domain_column=_identifier(env, "HUNTER_RESULTS_DOMAIN_COLUMN", "domain"),
            lead_id_column=_identifier(env, "HUNTER_RESULTS_LEAD_ID_COLUMN", "d365_lead_id"),
            status_column=_identifier(env, "HUNTER_RESULTS_STATUS_COLUMN", "d365_sync_status"),
            last_at_column=_identifier(env, "HUNTER_RESULTS_LAST_AT_COLUMN", "d365_sync_last_at"),
            error_column=_identifier(env, "HUNTER_RESULTS_ERROR_COLUMN", "d365_sync_error"),
            error_max_length=int(_number(env, "HUNTER_RESULTS_ERROR_MAX_LENGTH", 1000, 1, 1_000_000)),
            queue_name=queue,
            # An identity-based service URI wins, as in the Functions host, when both are set.
            storage_connection="" if service_uri else connection,
            queue_service_uri=service_uri,
            credential=env.get(f"{prefix}__credential", "").strip().lower(),
            client_id=env.get(f"{prefix}__clientId", "").strip(),
            batch_size=int(_number(env, "HUNTER_RESULTS_BATCH_SIZE", 32, 1, 32)),
            visibility_timeout=int(_number(env, "HUNTER_RESULTS_VISIBILITY_TIMEOUT_SECONDS", 60, 1, 7 * 24 * 3600)),
            poll_min_seconds=poll_min,
            poll_max_seconds=_number(env, "HUNTER_RESULTS_POLL_MAX_SECONDS", 30.0, poll_min, 3600),
            max_clock_skew_seconds=_number(env, "HUNTER_RESULTS_MAX_CLOCK_SKEW_SECONDS", 300.0, 0, 86400),
        )
