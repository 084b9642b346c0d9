"""What the use case needs from the outside world, as Protocols (`pipeline.Services` is typed
with these). The real parts satisfy them structurally — azure-storage-queue's `QueueClient`,
`dataverse.DataverseClient`, `state.StateStore` (itself over `state.Table`, which azure-data-tables'
`TableClient` satisfies) — and the unit tests hand the use case in-memory fakes that record what
happened (`tests/unit/fakes.py`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from shared.dataverse.auth import TokenProvider
from shared.dataverse.client import UpsertResult
from shared.models import SyncState
from shared.state import Claim


class MessageQueue(Protocol):
    """One storage queue (the subset of `azure.storage.queue.QueueClient` the app uses)."""

    def send_message(self, content: Any, *, visibility_timeout: int | None = None) -> Any:
        """Enqueue `content`; returns the sent message (with `.id`)."""
        ...

    def receive_messages(
        self,
        *,
        messages_per_page: int | None = None,
        visibility_timeout: int | None = None,
        max_messages: int | None = None,
    ) -> Iterable[Any]:
        """Messages made invisible for `visibility_timeout` seconds (each with `.content`)."""
        ...

    def delete_message(self, message: Any, pop_receipt: str | None = None) -> None:
        """Remove a received message."""
        ...

    def update_message(
        self,
        message: Any,
        pop_receipt: str | None = None,
        content: Any = None,
        *,
        visibility_timeout: int | None = None,
    ) -> Any:
        """Change a received message's visibility (and content)."""
        ...

    def get_queue_properties(self) -> Any:
        """The queue's properties (`approximate_message_count`)."""
        ...


class QueueSet(Protocol):
    """The app's queues (`storage.Queues`)."""

    @property
    def push(self) -> MessageQueue:
        """What the worker consumes."""
        ...

    @property
    def poison(self) -> MessageQueue:
        """What needs an operator."""
        ...

    @property
    def results(self) -> MessageQueue:
        """Outcomes for Hunter's backend."""
        ...

    def raw(self, name: str) -> MessageQueue:
        """Queue `name` with no encoding: messages as they lie on the queue."""
        ...


class Dataverse(Protocol):
    """The Dataverse calls the push makes (`dataverse.DataverseClient`)."""

    tokens: TokenProvider

    @property
    def last_latency_ms(self) -> float:
        """How long the calling thread's last Dataverse request took, in milliseconds."""
        ...

    def read_lead(
        self, lead_id: str, columns: tuple[str, ...], correlation_id: str | None = None
    ) -> dict[str, Any] | None:
        """The lead's columns, or None (404)."""
        ...

    def read_leads(
        self, lead_ids: list[str], columns: tuple[str, ...], correlation_id: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """The leads among `lead_ids` that exist."""
        ...

    def find_lead(self, column: str, value: str, correlation_id: str | None = None) -> str | None:
        """The id of a lead whose `column` equals `value`."""
        ...

    def get_lead_by_key(self, column: str, value: str, correlation_id: str | None = None) -> str | None:
        """The id of the lead with alternate key `column=value`."""
        ...

    def find_many(self, column: str, values: list[str], correlation_id: str | None = None) -> dict[str, str]:
        """Ids of the leads whose `column` equals one of `values`, by case-folded value."""
        ...

    def create_many(self, payloads: list[dict[str, Any]], correlation_id: str | None = None) -> list[str]:
        """Create leads in one all-or-nothing `CreateMultiple`; their ids in order."""
        ...

    def create_lead(self, payload: dict[str, Any], correlation_id: str | None = None) -> str:
        """Create a lead; its id."""
        ...

    def create_lead_if_absent(
        self, column: str, value: str, payload: dict[str, Any], correlation_id: str | None = None
    ) -> UpsertResult:
        """Create-only upsert through the alternate key."""
        ...


class StateStorePort(Protocol):
    """The sync-state store (`state.StateStore`)."""

    def get(self, domain: str) -> SyncState | None: ...

    def get_many(self, domains: list[str]) -> dict[str, SyncState]: ...

    def mark_queued(
        self,
        domain: str,
        correlation_id: str,
        current: SyncState | None = None,
        read: bool = True,
        sent_at: datetime | None = None,
    ) -> SyncState: ...

    def mark_verified(self, state: SyncState, verified_at: str) -> bool: ...

    def claim(self, domain: str, correlation_id: str) -> Claim | None: ...

    def renew(self, claim: Claim) -> Claim | None: ...

    def finish(self, claim: Claim, **changes: Any) -> SyncState | None: ...

    def is_synced(self, state: SyncState | None) -> bool: ...
