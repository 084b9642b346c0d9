"""Queue clients for a trigger's `connection`, read as the extension reads it.

Microsoft.Azure.WebJobs.Extensions.Storage.Common StorageClientProvider (azure-sdk-for-net) and
the Functions docs "Connecting to host storage with an identity": the setting `<connection>` holds a
connection string, or `<connection>__queueServiceUri` (or `__serviceUri`, or `__accountName` for the
public cloud) names the endpoint and `__credential=managedidentity` + `__clientId` pick the
identity. The host's own client sends and reads raw text; base64 is handled in queues.py.
"""

from __future__ import annotations

import os
import threading
from typing import Any

# A version both Azurite and Azure serve (the newest SDK default can run ahead of Azurite).
API_VERSION = "2021-12-02"
# Connections kept per queue client: host.json's batchSize (at most 32) messages run at once and as
# many again may be fetched, each deleted or its lease renewed on its own thread. The SDK's default
# pool of 10 discarded connections once more than 10 ran ("Connection pool is full").
POOL_SIZE = 65
_lock = threading.Lock()
_trips = 0


def round_trips() -> int:
    """HTTP round trips the host's own queue clients made (polling, deletes, lease renewals)."""
    with _lock:
        return _trips


def _count(response: Any, *args: Any, **kwargs: Any) -> Any:
    global _trips
    with _lock:
        _trips += 1
    return response


def _transport() -> Any:
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_maxsize=POOL_SIZE, max_retries=Retry(total=False, redirect=False, raise_on_status=False)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.hooks["response"].append(_count)
    return RequestsTransport(session=session, session_owner=False)


def queue_client(connection: str, name: str) -> Any:
    """A QueueClient for queue `name` on the account that `connection` names.

    Raises:
        KeyError: neither a connection string nor an identity-based endpoint is configured.
    """
    from azure.storage.queue import QueueClient

    conn_string = os.environ.get(connection)
    if conn_string:
        return QueueClient.from_connection_string(conn_string, name, api_version=API_VERSION, transport=_transport())
    endpoint = os.environ.get(f"{connection}__queueServiceUri") or os.environ.get(f"{connection}__serviceUri")
    account = os.environ.get(f"{connection}__accountName")
    if not endpoint and account:
        endpoint = f"https://{account}.queue.core.windows.net"
    if not endpoint:
        raise KeyError(f"storage connection '{connection}' is not configured")
    return QueueClient(
        endpoint, name, credential=_credential(connection), api_version=API_VERSION, transport=_transport()
    )


def _credential(connection: str) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = os.environ.get(f"{connection}__clientId")
    if os.environ.get(f"{connection}__credential", "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id)
