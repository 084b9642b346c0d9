"""In-memory stand-ins for the use case's ports (`shared/ports.py`), recording what happened, and a
tiny host loop that delivers queue messages the way the Functions host does (dequeue count,
`maxDequeueCount` → `-poison`) to the worker's entry point (`engine.process_message`, both message
shapes), so both can be tested branch by branch in milliseconds.

The fakes keep the semantics the pipeline relies on and nothing more: ETag-conditional table
writes (412 / 409), queue messages with ids, dequeue counts and visibility, Dataverse leads by id
and by domain. Faults are injected per method (`FakeDataverse.fail`, `FakeTable.fail`)."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from shared.config import Settings
from shared.dataverse import D365APIError
from shared.dataverse.auth import TokenProvider
from shared.dataverse.client import UpsertResult
from shared.engine import process_message
from shared.pipeline import Services
from shared.retry import Throttle
from shared.state import StateStore

BASE_ENV = {
    "HUNTER_D365_BASE_URL": "https://org.example.crm.dynamics.com",
    "HUNTER_D365_TENANT_ID": "tenant",
    "HUNTER_D365_CLIENT_ID": "client",
    "HUNTER_D365_CLIENT_SECRET": "unit-test-secret",
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "HUNTER_D365_RETRY_BASE_SECONDS": "1",
    "HUNTER_D365_RETRY_CAP_SECONDS": "8",
    "HUNTER_D365_RETRY_JITTER_SECONDS": "0",
    "HUNTER_D365_MAX_ATTEMPTS": "3",
    "HUNTER_D365_CLAIM_LEASE_SECONDS": "60",
    "HUNTER_D365_CLAIM_RETRY_SECONDS": "1",
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.now.timestamp()


class Boom(RuntimeError):
    """An exception nobody planned for."""


class Crash(BaseException):
    """The worker process dies mid-delivery (no `except Exception` catches it): the host sees
    nothing, the message comes back when its visibility lease ends, and the claim stays until
    its own lease ends."""


Fault = Exception | Callable[[], Exception]


def _take(faults: dict[str, list[Fault]], name: str) -> None:
    queue = faults.get(name)
    if queue:
        fault = queue.pop(0)
        raise fault() if callable(fault) and not isinstance(fault, Exception) else fault


# -- queues ------------------------------------------------------------------------------------


@dataclass
class FakeMessage:
    id: str
    content: Any
    dequeue_count: int = 0
    visible_at: datetime | None = None
    hidden: bool = False
    pop_receipt: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class Properties:
    approximate_message_count: int


class FakeQueue:
    """A queue: messages in order, each with a dequeue count and a visibility time."""

    def __init__(self, name: str, clock: Clock) -> None:
        self.name = name
        self.clock = clock
        self.messages: list[FakeMessage] = []
        self.sent = 0
        self.fail: dict[str, list[Fault]] = {}

    def send_message(self, content: Any, *, visibility_timeout: int | None = None) -> FakeMessage:
        _take(self.fail, "send_message")
        visible = self.clock() + timedelta(seconds=visibility_timeout or 0)
        message = FakeMessage(uuid.uuid4().hex, content, visible_at=visible)
        self.messages.append(message)
        self.sent += 1
        return message

    def visible(self) -> list[FakeMessage]:
        return [m for m in self.messages if not m.hidden and (m.visible_at or self.clock()) <= self.clock()]

    def receive_messages(
        self,
        *,
        messages_per_page: int | None = None,
        visibility_timeout: int | None = None,
        max_messages: int | None = None,
    ) -> Iterable[FakeMessage]:
        taken = self.visible()[: max_messages or 32]
        for message in taken:
            message.hidden = True
            message.dequeue_count += 1
        return taken

    def delete_message(self, message: Any, pop_receipt: str | None = None) -> None:
        self.messages.remove(message)

    def update_message(
        self,
        message: Any,
        pop_receipt: str | None = None,
        content: Any = None,
        *,
        visibility_timeout: int | None = None,
    ) -> Any:
        message.hidden = False
        message.visible_at = self.clock() + timedelta(seconds=visibility_timeout or 0)
        return message

    def get_queue_properties(self) -> Properties:
        return Properties(len(self.messages))

    def texts(self) -> list[str]:
        return [str(m.content) for m in self.messages]


class FakeQueues:
    """The app's three queues, by name."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.by_name = {
            name: FakeQueue(name, clock)
            for name in (settings.queue_name, settings.poison_queue_name, settings.results_queue_name)
        }
        self._settings = settings

    @property
    def push(self) -> FakeQueue:
        return self.by_name[self._settings.queue_name]

    @property
    def poison(self) -> FakeQueue:
        return self.by_name[self._settings.poison_queue_name]

    @property
    def results(self) -> FakeQueue:
        return self.by_name[self._settings.results_queue_name]

    def raw(self, name: str) -> FakeQueue:
        # The fakes keep text as sent: the encoded and the raw view of a queue are one list.
        return self.by_name[name]


# -- table -------------------------------------------------------------------------------------


class Entity(dict[str, Any]):
    """A row with its metadata, as azure-data-tables returns it."""

    def __init__(self, values: Mapping[str, Any], etag: str) -> None:
        super().__init__(values)
        self.metadata = {"etag": etag}


class FakeTable:
    """A table with ETags: conditional replace answers 412 when the row changed."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = itertools.count(1)
        self.fail: dict[str, list[Fault]] = {}
        self.writes: list[dict[str, Any]] = []

    def get_entity(self, partition_key: str, row_key: str) -> Entity:
        _take(self.fail, "get_entity")
        try:
            values, etag = self.rows[(partition_key, row_key)]
        except KeyError:
            raise ResourceNotFoundError("The specified resource does not exist.") from None
        return Entity(values, etag)

    def query_entities(self, query_filter: str, *, parameters: dict[str, Any] | None = None) -> list[Entity]:
        _take(self.fail, "query_entities")
        parameters = parameters or {}
        # As azure-data-tables substitutes: words split at single spaces, "@name" must be a key.
        names = [word[1:] for word in query_filter.split(" ") if word.startswith("@")]
        values = {name: parameters[name] for name in names}
        wanted = {values[name] for name in re.findall(r"PartitionKey eq @(\w+)", query_filter)}
        row = parameters.get("row")
        return [Entity(v, e) for (pk, rk), (v, e) in self.rows.items() if pk in wanted and rk == row]

    def create_entity(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        _take(self.fail, "create_entity")
        key = (entity["PartitionKey"], entity["RowKey"])
        if key in self.rows:
            raise ResourceExistsError("The specified entity already exists.")
        return self._store(key, entity)

    def update_entity(
        self, entity: Mapping[str, Any], mode: Any = None, *, etag: str | None = None, match_condition: Any = None
    ) -> dict[str, Any]:
        _take(self.fail, "update_entity")
        key = (entity["PartitionKey"], entity["RowKey"])
        current = self.rows.get(key)
        if current is None or (etag is not None and current[1] != etag):
            error = HttpResponseError("The update condition specified in the request was not satisfied.")
            error.status_code = 412
            raise error
        return self._store(key, entity)

    def _store(self, key: tuple[str, str], entity: Mapping[str, Any]) -> dict[str, Any]:
        etag = f'W/"{next(self._etags)}"'
        self.rows[key] = (dict(entity), etag)
        self.writes.append(dict(entity))
        return {"etag": etag}


# -- Dataverse ---------------------------------------------------------------------------------


class FakeTokens:
    mode = "client_secret"

    def get_token(self, correlation_id: str | None = None) -> str:
        return "fake-token"

    def renew(self, rejected: str, correlation_id: str | None = None) -> str:
        return "fake-token-2"


class FakeDataverse:
    """Leads by id; every call recorded as (method, argument); faults injected per method."""

    def __init__(self) -> None:
        self.leads: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail: dict[str, list[Fault]] = {}
        self.tokens: TokenProvider = FakeTokens()
        self.last_latency_ms = 0.0
        self.drop_after_create = False
        # Bulk creates: domains whose record Dataverse refuses (400: the whole call fails, as on a
        # standard table), whether hnt_domain is a unique alternate key, and how many of the next
        # CreateMultiple calls commit and then lose their response.
        self.refuse: set[str] = set()
        self.unique_key = True
        self.drop_after_create_many = 0
        # Raised by the next creates (any kind) after they committed: a lost answer, a crash.
        self.after_commit: list[BaseException] = []
        # Called with the method's name before each call (a slow call moves the clock; a test
        # interleaves a competing push).
        self.on_call: Callable[[str], None] | None = None

    def _call(self, method: str, argument: str) -> None:
        self.calls.append((method, argument))
        if self.on_call is not None:
            self.on_call(method)
        _take(self.fail, method)

    def _committed(self) -> None:
        if self.after_commit:
            raise self.after_commit.pop(0)

    def add(self, **fields: Any) -> str:
        lead_id = str(uuid.uuid4())
        self.leads[lead_id] = {"leadid": lead_id, **fields}
        return lead_id

    def read_lead(
        self, lead_id: str, columns: tuple[str, ...], correlation_id: str | None = None
    ) -> dict[str, Any] | None:
        self._call("read_lead", lead_id)
        record = self.leads.get(lead_id)
        return None if record is None else {c: record.get(c) for c in ("leadid", *columns)}

    def read_leads(
        self, lead_ids: list[str], columns: tuple[str, ...], correlation_id: str | None = None
    ) -> dict[str, dict[str, Any]]:
        self._call("read_leads", ",".join(lead_ids))
        return {i: {c: self.leads[i].get(c) for c in ("leadid", *columns)} for i in lead_ids if i in self.leads}

    def find_lead(self, column: str, value: str, correlation_id: str | None = None) -> str | None:
        self._call("find_lead", value)
        for lead_id, record in self.leads.items():
            if str(record.get(column, "")).casefold() == value.casefold():
                return lead_id
        return None

    def get_lead_by_key(self, column: str, value: str, correlation_id: str | None = None) -> str | None:
        self._call("get_lead_by_key", value)
        for lead_id, record in self.leads.items():
            if str(record.get(column, "")).casefold() == value.casefold():
                return lead_id
        return None

    def create_lead(self, payload: dict[str, Any], correlation_id: str | None = None) -> str:
        self._call("create_lead", str(payload.get("hnt_domain") or payload.get("websiteurl")))
        lead_id = self.add(**payload)
        self._committed()
        return lead_id

    def find_many(self, column: str, values: list[str], correlation_id: str | None = None) -> dict[str, str]:
        self._call("find_many", ",".join(values))
        wanted = {value.casefold() for value in values}
        found: dict[str, str] = {}
        for lead_id, record in self.leads.items():
            value = record.get(column)
            if isinstance(value, str) and value.casefold() in wanted:
                found.setdefault(value.casefold(), lead_id)
        return found

    def create_many(self, payloads: list[dict[str, Any]], correlation_id: str | None = None) -> list[str]:
        """All or nothing, as CreateMultiple on a standard table."""
        keys = [str(p.get("hnt_domain") or p.get("websiteurl")) for p in payloads]
        self._call("create_many", ",".join(keys))
        for key in keys:
            if key in self.refuse or key.removeprefix("https://") in self.refuse:
                raise D365APIError("A validation error occurred.", 400, "0x80044331")
        if self.unique_key:
            taken = {str(r.get("hnt_domain", "")).casefold() for r in self.leads.values()}
            folded = [str(p.get("hnt_domain", "")).casefold() for p in payloads if p.get("hnt_domain")]
            if len(set(folded)) != len(folded) or taken & set(folded):
                raise D365APIError("A record with matching key values already exists.", 412, "0x80060892")
        ids = [self.add(**payload) for payload in payloads]
        self._committed()
        if self.drop_after_create_many:
            self.drop_after_create_many -= 1
            raise D365APIError("no response from Dataverse (ConnectionError)", 0, "connection_error", transient=True)
        return ids

    def create_lead_if_absent(
        self, column: str, value: str, payload: dict[str, Any], correlation_id: str | None = None
    ) -> UpsertResult:
        self._call("create_lead_if_absent", value)
        if any(str(r.get(column, "")).casefold() == value.casefold() for r in self.leads.values()):
            return UpsertResult(None, created=False)
        lead_id = self.add(**payload)
        self._committed()
        return UpsertResult(lead_id, created=True)


# -- wiring and the host loop ------------------------------------------------------------------


@dataclass
class World:
    """Services over fakes, and handles on the fakes."""

    services: Services
    clock: Clock
    table: FakeTable
    dataverse: FakeDataverse
    queues: FakeQueues

    def state(self, domain: str) -> dict[str, Any] | None:
        row = self.table.rows.get((domain, "lead"))
        return None if row is None else row[0]


def world(**settings: str) -> World:
    clock = Clock()
    config = Settings.from_env({**BASE_ENV, **settings})
    table = FakeTable()
    dataverse = FakeDataverse()
    queues = FakeQueues(config, clock)
    services = Services(
        settings=config,
        dataverse=dataverse,
        state=StateStore(table, config.claim_lease_seconds, clock),
        queues=queues,
        clock=clock,
        throttle=Throttle(clock.monotonic),
    )
    return World(services, clock, table, dataverse, queues)


MAX_DEQUEUE_COUNT = 5  # the host's default (host.json extensions.queues.maxDequeueCount)
CRASH_VISIBILITY_SECONDS = 30  # a dead worker's message comes back after host.json's visibilityTimeout


def run_host(w: World, max_deliveries: int = 200, step_seconds: float = 61.0) -> list[Any]:
    """Deliver push-queue messages until the queue is empty, as the Functions host does: an
    exception leaves the message for another delivery; past `maxDequeueCount` it is copied to
    `-poison`. The clock moves on after each delivery (so delays and claim leases pass).

    Raises AssertionError when the queue is not empty after `max_deliveries`: a loop."""
    outcomes: list[Any] = []
    for _ in range(max_deliveries):
        push = w.queues.push
        if not push.messages:
            return outcomes
        ready = push.visible()
        if not ready:
            w.clock.advance(step_seconds)
            continue
        message = ready[0]
        message.dequeue_count += 1
        message.visible_at = w.clock() + timedelta(days=1)  # in flight: hidden, as the host's lease does
        if message.dequeue_count > MAX_DEQUEUE_COUNT:
            w.queues.poison.send_message(message.content)
            push.delete_message(message)
            outcomes.append("host_poison")
            continue
        try:
            outcomes.append(
                process_message(str(message.content).encode(), w.services, lambda: 0.0, message.dequeue_count)
            )
        except Crash as exc:
            outcomes.append(exc)
            message.visible_at = w.clock() + timedelta(seconds=CRASH_VISIBILITY_SECONDS)
        except Exception as exc:
            outcomes.append(exc)
            message.visible_at = w.clock() + timedelta(seconds=1)
        else:
            push.delete_message(message)
        w.clock.advance(step_seconds)
    raise AssertionError(f"still {len(w.queues.push.messages)} message(s) after {max_deliveries} deliveries")
