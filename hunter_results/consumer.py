"""Draining the results queue into Hunter's table: receive, apply, commit, then delete.

For each message, in the order received:

1. read it (`outcome.read_message`); unreadable → sent, exactly as it lay, to the consumer's own
   poison queue `<results queue>-poison`, then deleted (event `hunter_results_poisoned`; Bicep creates that queue);
   an outcome dated more than `HUNTER_RESULTS_MAX_CLOCK_SKEW_SECONDS` ahead of this clock goes
   there too (reason and `field: at`): applied, it would win every later comparison and freeze the row;
2. apply it in one transaction (`table.HunterTable.apply`): `applied`, `stale` (older than or
   the same as what the row holds: a late or duplicate delivery, nothing changed) or `unknown`
   (Hunter has no such domain: counted and logged as `hunter_results_unknown_domain`, not kept);
   a value the table cannot take (`psycopg.DataError`) → poison, with the database's reason;
3. only after the commit, delete the message. A crash between 2 and 3 redelivers the message
   after the visibility timeout, and step 2 finds it stale: at-least-once delivery, applied once.

A database or storage failure stops the batch and raises: the messages not yet deleted come back
after their visibility timeout. `run` is the loop around `drain`: drain until the queue is empty,
then wait, doubling the wait while the queue stays empty or the failure lasts (from
`HUNTER_RESULTS_POLL_MIN_SECONDS` up to `HUNTER_RESULTS_POLL_MAX_SECONDS`), back to draining at once
when a message arrives.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from hunter_results.outcome import Outcome, Unreadable, read_message
from hunter_results.settings import ConsumerSettings
from hunter_results.table import HunterTable, connect

logger = logging.getLogger(__name__)

# The storage REST version the app uses too (shared/storage.py): served by Azure and Azurite alike.
QUEUE_API_VERSION = "2021-12-02"
_QUEUE_OPTIONS: dict[str, Any] = {
    "api_version": QUEUE_API_VERSION,
    "connection_timeout": 5,
    "read_timeout": 15,
    "retry_total": 2,
    # Raw both ways: messages are decoded here (`read_message`), and a poisoned one is copied as it lay.
    "message_encode_policy": None,
    "message_decode_policy": None,
}


class Message(Protocol):
    """What the consumer uses of `azure.storage.queue.QueueMessage`."""

    id: str
    pop_receipt: str | None
    content: Any
    dequeue_count: int | None


class Queue(Protocol):
    """What the consumer uses of a `QueueClient` (tests may hand in a fake)."""

    def receive_messages(
        self, *, messages_per_page: int, max_messages: int, visibility_timeout: int
    ) -> Iterable[Any]: ...
    def delete_message(self, message: Any) -> None: ...
    def send_message(self, content: Any) -> Any: ...


@dataclass
class Counts:
    """What a drain did, message by message."""

    received: int = 0
    applied: int = 0
    stale: int = 0
    unknown: int = 0
    poisoned: int = 0
    unknown_domains: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        """Add another drain's counts to these."""
        for name in ("received", "applied", "stale", "unknown", "poisoned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.unknown_domains.extend(other.unknown_domains)

    def summary(self) -> dict[str, int]:
        """The counts as a dict (for a log line or a command's output)."""
        return {name: getattr(self, name) for name in ("received", "applied", "stale", "unknown", "poisoned")}


def describe(exc: BaseException) -> str:
    """A failure in one line for a log: the database's own first line (libpq never puts the
    password there), or for storage only the status and error code (a message could carry a URL
    with a SAS token)."""
    if isinstance(exc, psycopg.Error):
        return (str(exc).strip().splitlines() or [""])[0][:300]
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    return " ".join(str(part) for part in (type(exc).__name__, status, code) if part)


def _credential(settings: ConsumerSettings) -> Any:
    """The identity the queue is reached with: a managed identity when the settings say so (as the
    Functions host reads `__credential=managedidentity`), else azure-identity's default chain
    (environment, workload identity, managed identity, Azure CLI, …)."""
    if settings.credential == "managedidentity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.client_id or None)
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(managed_identity_client_id=settings.client_id or None)


def queue_clients(settings: ConsumerSettings) -> tuple[QueueClient, QueueClient]:
    """The results queue and the consumer's poison queue, both raw (no base64 policy), both
    created if missing (Bicep creates them in Azure; the call is then a no-op).

    Raises:
        azure.core.exceptions.AzureError: storage cannot be reached or refused the identity.
    """
    if settings.queue_service_uri:
        service = QueueServiceClient(settings.queue_service_uri, credential=_credential(settings), **_QUEUE_OPTIONS)
    else:
        service = QueueServiceClient.from_connection_string(settings.storage_connection, **_QUEUE_OPTIONS)
    clients = []
    for name in (settings.queue_name, settings.poison_queue_name):
        client = service.get_queue_client(name, message_encode_policy=None, message_decode_policy=None)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        clients.append(client)
    return clients[0], clients[1]


class Consumer:
    """One consumer: a queue pair, a table and a database connection (re-opened after a failure)."""

    def __init__(
        self,
        settings: ConsumerSettings,
        queues: tuple[Queue, Queue] | None = None,
        connector: Callable[[ConsumerSettings], psycopg.Connection[Any]] = connect,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.table = HunterTable(settings)
        self._queues = queues
        self._connector = connector
        self._connection: psycopg.Connection[Any] | None = None
        # What `run` has done so far (read it from another thread for a health or metrics endpoint).
        self.totals = Counts()

    @property
    def queues(self) -> tuple[Queue, Queue]:
        """(results, poison), made on first use."""
        if self._queues is None:
            self._queues = queue_clients(self.settings)
        return self._queues

    def connection(self) -> psycopg.Connection[Any]:
        """The open database connection, checked against the settings when it is opened.

        Raises:
            psycopg.Error: the database cannot be reached, or the table or a column does not exist.
        """
        if self._connection is None or self._connection.closed or self._connection.broken:
            self.close()
            connection = self._connector(self.settings)
            try:
                self.table.check(connection)
            except psycopg.Error:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def close(self) -> None:
        """Close the database connection (the queues hold no resources worth closing)."""
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def drain(self, max_messages: int | None = None) -> Counts:
        """Apply messages until the queue is empty (or `max_messages` were received).

        Raises:
            psycopg.Error: the database failed; the message in hand and those after it stay queued.
            azure.core.exceptions.AzureError: storage failed.
        """
        counts = Counts()
        while max_messages is None or counts.received < max_messages:
            wanted = self.settings.batch_size
            if max_messages is not None:
                wanted = min(wanted, max_messages - counts.received)
            results, _ = self.queues
            batch = list(
                results.receive_messages(
                    messages_per_page=wanted, max_messages=wanted, visibility_timeout=self.settings.visibility_timeout
                )
            )
            if not batch:
                break
            for message in batch:
                counts.received += 1
                self._handle(message, counts)
        if counts.received:
            logger.info("hunter_results_drained", extra=counts.summary())
        return counts

    def _handle(self, message: Message, counts: Counts) -> None:
        try:
            outcome = read_message(message.content)
        except Unreadable as exc:
            self._poison(message, str(exc), counts, field=exc.field)
            return
        skew = self.settings.max_clock_skew_seconds
        if outcome.at > self._clock() + timedelta(seconds=skew):
            self._poison(message, f"at: more than {skew:g} seconds in the future", counts, outcome, field="at")
            return
        try:
            result = self.table.apply(self.connection(), outcome)
        except psycopg.DataError as exc:
            # The value does not fit the column (a type or length Hunter chose): this message can
            # never be applied as it is, and must not hold back the ones behind it.
            self._poison(message, f"the database refused the values: {type(exc).__name__}", counts, outcome)
            return
        except psycopg.Error:
            self.close()
            raise
        self._delete(message)
        self._count(result, outcome, counts)

    def _count(self, result: str, outcome: Outcome, counts: Counts) -> None:
        fields = {
            "domain": outcome.domain,
            "status": outcome.status,
            "outcome": outcome.outcome,
            "d365_lead_id": outcome.d365_lead_id,
            "at": outcome.at.isoformat(),
            "correlation_id": outcome.correlation_id,
        }
        if result == "applied":
            counts.applied += 1
            logger.info("hunter_results_applied", extra=fields)
        elif result == "stale":
            counts.stale += 1
            logger.info("hunter_results_stale", extra=fields)
        else:
            counts.unknown += 1
            counts.unknown_domains.append(outcome.domain)
            logger.warning("hunter_results_unknown_domain", extra=fields)

    def _poison(
        self,
        message: Message,
        reason: str,
        counts: Counts,
        outcome: Outcome | None = None,
        field: str | None = None,
    ) -> None:
        _, poison = self.queues
        poison.send_message(message.content)
        self._delete(message)
        counts.poisoned += 1
        logger.error(
            "hunter_results_poisoned",
            extra={
                "message_id": message.id,
                "dequeue_count": message.dequeue_count,
                "reason": reason,
                "field": field,
                "domain": outcome.domain if outcome else None,
                "queue": self.settings.poison_queue_name,
            },
        )

    def _delete(self, message: Message) -> None:
        results, _ = self.queues
        try:
            results.delete_message(message)
        except (ResourceNotFoundError, HttpResponseError) as exc:
            if not isinstance(exc, ResourceNotFoundError) and getattr(exc, "error_code", None) != "PopReceiptMismatch":
                raise
            # The visibility timeout ran out and another receive took the message (or deleted it):
            # whoever holds it now finds the row already up to date.
            logger.warning("hunter_results_delete_lost", extra={"message_id": message.id})

    def run(self, stop: threading.Event, on_idle: Callable[[float], None] | None = None) -> Counts:
        """Drain, wait with backoff while idle or failing, until `stop` is set; returns the totals.

        Failures of the database or storage are logged (`hunter_results_failed`) and retried with
        the same backoff; nothing is lost, since no message is deleted before its row is committed.
        """
        wait = 0.0
        s = self.settings
        while not stop.is_set():
            try:
                # One batch at a time, so that `stop` is seen between batches of a long backlog.
                counts = self.drain(s.batch_size)
            except (psycopg.Error, AzureError) as exc:
                wait = min(max(wait * 2, s.poll_min_seconds), s.poll_max_seconds)
                logger.error(
                    "hunter_results_failed",
                    extra={"error_code": type(exc).__name__, "error": describe(exc), "retry_in_seconds": wait},
                )
            else:
                self.totals.add(counts)
                if counts.received == s.batch_size:  # a full batch: more is likely waiting
                    wait = 0.0
                elif counts.received:  # drained: look again soon, the backoff starts over
                    wait = s.poll_min_seconds
                else:  # idle: wait twice as long each time, up to the maximum
                    wait = min(max(wait * 2, s.poll_min_seconds), s.poll_max_seconds)
            if wait:
                if on_idle is not None:
                    on_idle(wait)
                stop.wait(wait)
        self.close()
        return self.totals


def drain(settings: ConsumerSettings | None = None, max_messages: int | None = None) -> Counts:
    """Apply every outcome now on the results queue to Hunter's table, then return the counts.

    The importable entry point for Hunter's own scheduler (cron, Celery beat): one call drains the
    queue and returns. `settings` default to `ConsumerSettings.from_env()`.

    Raises:
        hunter_results.settings.ConfigError: a setting is missing or malformed.
        psycopg.Error: the database failed (what was not applied stays queued).
        azure.core.exceptions.AzureError: storage failed.
    """
    consumer = Consumer(settings or ConsumerSettings.from_env())
    try:
        return consumer.drain(max_messages)
    finally:
        consumer.close()


def run(settings: ConsumerSettings | None = None, stop: threading.Event | None = None) -> Counts:
    """The long-running loop (`python -m hunter_results`): drain, back off while idle, until `stop`.

    Raises:
        hunter_results.settings.ConfigError: a setting is missing or malformed.
    """
    consumer = Consumer(settings or ConsumerSettings.from_env())
    return consumer.run(stop or threading.Event())
