"""Azure Storage clients for the app: the push, poison and results queues, and the state table.

Locally `AzureWebJobsStorage` is a connection string (Azurite); in Azure it is identity-based
(`AzureWebJobsStorage__queueServiceUri` / `__tableServiceUri` + the app's managed identity), so
no account key exists anywhere. Queue messages are base64 on the wire, as the Functions host
expects. Queues and the table are created on first use in a process (Bicep creates them in Azure;
the call is then a cheap no-op), never at import time nor while the services are built.

Connection pools are sized to the threads that use them (`pool_size`): the SDKs' default pool
keeps 10 connections per host, and every connection returned beyond that is closed ("Connection
pool is full, discarding connection") — a new TCP (and TLS) handshake for the next call. Every
HTTP round trip to Storage is counted (`round_trips`), so benchmarks can report them per lead.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.config import Settings

# The newest storage REST versions can run ahead of Azurite; this one both serve.
QUEUE_API_VERSION = "2021-12-02"
# Storage calls are bounded: connect in 5 s, an answer in 15 s, two retries a second apart. The
# SDKs' defaults (three retries with 15 s+ backoff, no read timeout of note) made an HTTP push
# hang for over a minute while storage was down; callers answer 503 "try again" instead.
_QUEUE_OPTIONS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 15,
    "retry_total": 2,
    "initial_backoff": 1,
    "increment_base": 1,
}
_TABLE_OPTIONS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 15,
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 2,
}


# Threads of one invocation that may call Storage at once: a bulk message's per-lead state work
# and push-leads' enqueues fan out over 16 threads (shared/engine.py STORAGE_CONCURRENCY, the
# accept_batch concurrency; tests/integration/test_storage_pool.py keeps them equal).
THREADS_PER_INVOCATION = 16
_TRIPS_LOCK = threading.Lock()
_trips_seen = 0


def round_trips() -> int:
    """HTTP round trips this process has made to Storage (queues and table) so far."""
    with _TRIPS_LOCK:
        return _trips_seen


def _count(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    global _trips_seen
    with _TRIPS_LOCK:
        _trips_seen += 1
    return response


def pool_size(settings: Settings) -> int:
    """Connections kept per Storage endpoint: every worker thread of the host
    (PYTHON_THREADPOOL_THREAD_COUNT, `Settings.worker_threads`) running an invocation that fans
    out over `THREADS_PER_INVOCATION` threads of its own, each holding one connection at most."""
    return settings.worker_threads * (1 + THREADS_PER_INVOCATION)


def _transport(settings: Settings, options: Mapping[str, Any]) -> RequestsTransport:
    """A transport whose pool holds `pool_size` connections, counting round trips. As the SDK's
    own transport: retries are the pipeline's (none in the adapter), the proxy settings of the
    environment apply, and the connect/read timeouts of `options`."""
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4,
        pool_maxsize=pool_size(settings),
        max_retries=Retry(total=False, redirect=False, raise_on_status=False),
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(_count)
    return RequestsTransport(
        session=session,
        session_owner=False,
        connection_timeout=options["connection_timeout"],
        read_timeout=options["read_timeout"],
    )


def _credential(settings: Settings) -> TokenCredential:
    from azure.identity import ManagedIdentityCredential

    if settings.storage_client_id:
        return ManagedIdentityCredential(client_id=settings.storage_client_id)
    return ManagedIdentityCredential()


class Queues:
    """The app's three queues, base64-encoded, created once per process on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, bool], QueueClient] = {}
        self._transport = _transport(settings, _QUEUE_OPTIONS)  # one pool for the three queues

    def _service(self) -> QueueServiceClient:
        options: dict[str, Any] = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
            "api_version": QUEUE_API_VERSION,
            "transport": self._transport,
            **_QUEUE_OPTIONS,
        }
        if self._settings.storage_connection:
            return QueueServiceClient.from_connection_string(self._settings.storage_connection, **options)
        return QueueServiceClient(
            self._settings.storage_queue_service_uri, credential=_credential(self._settings), **options
        )

    def client(self, name: str) -> QueueClient:
        """The client of queue `name`, base64 both ways (created if it does not exist yet)."""
        return self._client(name, encoded=True)

    def raw(self, name: str) -> QueueClient:
        """A client of queue `name` with no encode or decode policy: messages as they lie on the
        queue, for readers that must cope with whatever is there (the poison queue)."""
        return self._client(name, encoded=False)

    def _client(self, name: str, encoded: bool) -> QueueClient:
        with self._lock:
            client = self._clients.get((name, encoded))
            if client is None:
                service = self._service()
                policies: dict[str, Any] = (
                    {
                        "message_encode_policy": TextBase64EncodePolicy(),
                        "message_decode_policy": TextBase64DecodePolicy(),
                    }
                    if encoded
                    else {"message_encode_policy": None, "message_decode_policy": None}
                )
                client = service.get_queue_client(name, **policies)
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
                self._clients[(name, encoded)] = client
            return client

    @property
    def push(self) -> QueueClient:
        """`d365-lead-push`: what the worker consumes."""
        return self.client(self._settings.queue_name)

    @property
    def poison(self) -> QueueClient:
        """`d365-lead-push-poison`: what needs an operator."""
        return self.client(self._settings.poison_queue_name)

    @property
    def results(self) -> QueueClient:
        """`d365-lead-push-results`: outcomes for Hunter's backend."""
        return self.client(self._settings.results_queue_name)


class LazyTable:
    """The sync-state table, created on first use (never while the services are built, so a cold
    instance whose storage is unreachable still answers, with 503, instead of failing to start)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: TableClient | None = None

    def _table(self) -> TableClient:
        with self._lock:
            if self._client is None:
                settings = self._settings
                options = {**_TABLE_OPTIONS, "transport": _transport(settings, _TABLE_OPTIONS)}
                if settings.storage_connection:
                    service = TableServiceClient.from_connection_string(settings.storage_connection, **options)
                else:
                    service = TableServiceClient(
                        settings.storage_table_service_uri, credential=_credential(settings), **options
                    )
                self._client = service.create_table_if_not_exists(settings.state_table_name)
            return self._client

    def get_entity(self, partition_key: str, row_key: str) -> Any:
        """See `TableClient.get_entity`."""
        return self._table().get_entity(partition_key=partition_key, row_key=row_key)

    def query_entities(self, query_filter: str, *, parameters: dict[str, Any] | None = None) -> Iterable[Any]:
        """See `TableClient.query_entities`."""
        return self._table().query_entities(query_filter, parameters=parameters)

    def create_entity(self, entity: Mapping[str, Any]) -> Mapping[str, Any]:
        """See `TableClient.create_entity`."""
        return self._table().create_entity(entity)

    def update_entity(
        self,
        entity: Mapping[str, Any],
        mode: UpdateMode = UpdateMode.MERGE,
        *,
        etag: str | None = None,
        match_condition: Any = None,
    ) -> Mapping[str, Any]:
        """See `TableClient.update_entity`."""
        return self._table().update_entity(entity, mode, etag=etag, match_condition=match_condition)


def state_table(settings: Settings) -> LazyTable:
    """The sync-state table (created if missing, on first use)."""
    return LazyTable(settings)
