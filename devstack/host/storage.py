"""Queue clients for a trigger's `connection`, read as the extension reads it.

Microsoft.Azure.WebJobs.Extensions.Storage.Common StorageClientProvider (azure-sdk-for-net) and
the Functions docs "Connecting to host storage with an identity": the setting `<connection>` holds a
connection string, or `<connection>__queueServiceUri` (or `__serviceUri`, or `__accountName` for the
public cloud) names the endpoint and `__credential=managedidentity` + `__clientId` pick the
identity. The host's own client sends and reads raw text; base64 is handled in queues.py.
"""

from __future__ import annotations

import os
from typing import Any

# A version both Azurite and Azure serve (the newest SDK default can run ahead of Azurite).
API_VERSION = "2021-12-02"


def queue_client(connection: str, name: str) -> Any:
    """A QueueClient for queue `name` on the account that `connection` names.

    Raises:
        KeyError: neither a connection string nor an identity-based endpoint is configured.
    """
    from azure.storage.queue import QueueClient

    conn_string = os.environ.get(connection)
    if conn_string:
        return QueueClient.from_connection_string(conn_string, name, api_version=API_VERSION)
    endpoint = os.environ.get(f"{connection}__queueServiceUri") or os.environ.get(f"{connection}__serviceUri")
    account = os.environ.get(f"{connection}__accountName")
    if not endpoint and account:
        endpoint = f"https://{account}.queue.core.windows.net"
    if not endpoint:
        raise KeyError(f"storage connection '{connection}' is not configured")
    return QueueClient(endpoint, name, credential=_credential(connection), api_version=API_VERSION)


def _credential(connection: str) -> Any:
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = os.environ.get(f"{connection}__clientId")
    if os.environ.get(f"{connection}__credential", "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id)
