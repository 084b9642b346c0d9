"""Hunter's results consumer against real services: Azurite (the results queue and the consumer's
poison queue) and a real PostgreSQL (Hunter's `companies` table, one database per test). Outcomes
are sent as the app sends them (`PushOutcome.to_json()` through a base64 client); the assertions
read the row with the seed's own SELECT and look in the queues."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.hunter_db import add_company, company, seed_select
from devstack.simulator import Simulator
from hunter_results import Consumer, ConsumerSettings, drain
from shared.models import Outcome, PushOutcome, SyncStatus, iso
from tests.conftest import ROOT, Azurite

ID_1 = "11111111-1111-4111-8111-111111111111"
ID_2 = "22222222-2222-4222-8222-222222222222"
T0 = datetime(2026, 1, 30, 10, 0, 0, tzinfo=UTC)


@pytest.fixture
def env(azurite: Azurite, hunter_db: str, names: dict[str, str]) -> dict[str, str]:
    """The consumer's settings for this test: its database, Azurite by connection string, its queue."""
    return {
        "HUNTER_RESULTS_DATABASE_URL": hunter_db,
        "AzureWebJobsStorage": azurite.connection_string,
        "HUNTER_D365_RESULTS_QUEUE": names["HUNTER_D365_RESULTS_QUEUE"],
    }


def queue(azurite: Azurite, name: str, encoded: bool = True) -> QueueClient:
    options: dict[str, Any] = {"api_version": "2021-12-02"}
    if encoded:
        options |= {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
        }
    else:
        options |= {"message_encode_policy": None, "message_decode_policy": None}
    client = QueueClient.from_connection_string(azurite.connection_string, name, **options)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


@pytest.fixture
def send(azurite: Azurite, env: dict[str, str]) -> Callable[..., str]:
    """`send(domain, at, status=…, …)` puts an outcome on the results queue as the app does."""
    results = queue(azurite, env["HUNTER_D365_RESULTS_QUEUE"])

    def send_outcome(domain: str, at: datetime, status: str = "synced", **fields: Any) -> str:
        outcome = PushOutcome(
            domain=domain,
            status=SyncStatus(status),
            outcome=Outcome(fields.pop("outcome", "created" if status == "synced" else "failed")),
            correlation_id=fields.pop("correlation_id", "c-test"),
            d365_lead_id=fields.pop("d365_lead_id", ID_1 if status == "synced" else None),
            at=iso(at),
            **fields,
        )
        body = outcome.to_json()
        results.send_message(body)
        return body

    return send_outcome


def settings(env: dict[str, str], **extra: str) -> ConsumerSettings:
    return ConsumerSettings.from_env({**env, **extra})


def remaining(azurite: Azurite, name: str) -> list[str]:
    return [m.content for m in queue(azurite, name, encoded=False).peek_messages(max_messages=32)]


def test_a_synced_outcome_fills_the_seeds_columns(env: dict[str, str], send: Callable[..., str]) -> None:
    add_company(env["HUNTER_RESULTS_DATABASE_URL"], "acme.example")
    assert seed_select(env["HUNTER_RESULTS_DATABASE_URL"], "acme.example") == (None, "not_synced", None)
    send("acme.example", T0)
    counts = drain(settings(env))
    assert counts.summary() == {"received": 1, "applied": 1, "stale": 0, "unknown": 0, "poisoned": 0}
    assert seed_select(env["HUNTER_RESULTS_DATABASE_URL"], "acme.example") == (ID_1, "synced", T0)


def test_an_older_outcome_arriving_after_a_newer_one_changes_nothing(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite
) -> None:
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    add_company(url, "acme.example")
    send("acme.example", T0 + timedelta(seconds=5), status="error", error="HTTP 500 after 4 attempts")
    send("acme.example", T0, d365_lead_id=ID_1)  # older, delivered second
    counts = drain(settings(env))
    assert (counts.applied, counts.stale) == (1, 1)
    row = company(url, "acme.example")
    assert row is not None
    assert (row["d365_sync_status"], row["d365_sync_error"], row["d365_lead_id"]) == (
        "error",
        "HTTP 500 after 4 attempts",
        None,
    )
    assert row["d365_sync_last_at"] == T0 + timedelta(seconds=5)
    # And the other way round: the newer one, later, wins.
    send("acme.example", T0 + timedelta(seconds=9), d365_lead_id=ID_2, outcome="recreated")
    drain(settings(env))
    assert seed_select(url, "acme.example") == (ID_2, "synced", T0 + timedelta(seconds=9))
    assert company(url, "acme.example")["d365_sync_error"] is None  # type: ignore[index]
    assert remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"]) == []


def test_a_duplicate_delivery_changes_nothing(env: dict[str, str], send: Callable[..., str], azurite: Azurite) -> None:
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    add_company(url, "acme.example")
    body = send("acme.example", T0)
    drain(settings(env))
    before = company(url, "acme.example")
    # The same message again (the queue delivers at least once), and once more by hand-written JSON.
    queue(azurite, env["HUNTER_D365_RESULTS_QUEUE"]).send_message(body)
    queue(azurite, env["HUNTER_D365_RESULTS_QUEUE"], encoded=False).send_message(body)
    with psycopg.connect(url) as connection:
        xmin_before = connection.execute("SELECT xmin::text FROM companies WHERE domain = 'acme.example'").fetchone()
    counts = drain(settings(env))
    assert (counts.received, counts.applied, counts.stale) == (2, 0, 2)
    assert company(url, "acme.example") == before
    with psycopg.connect(url) as connection:
        xmin_after = connection.execute("SELECT xmin::text FROM companies WHERE domain = 'acme.example'").fetchone()
    assert xmin_after == xmin_before  # not even rewritten with the same values


def test_a_domain_hunter_does_not_have_is_counted_logged_and_not_kept(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite, caplog: pytest.LogCaptureFixture
) -> None:
    add_company(env["HUNTER_RESULTS_DATABASE_URL"], "known.example")
    send("stranger.example", T0)
    send("known.example", T0)
    with caplog.at_level("INFO", logger="hunter_results"):
        counts = drain(settings(env))
    assert (counts.applied, counts.unknown, counts.unknown_domains) == (1, 1, ["stranger.example"])
    [logged] = [r for r in caplog.records if r.getMessage() == "hunter_results_unknown_domain"]
    assert logged.domain == "stranger.example" and logged.levelname == "WARNING"  # type: ignore[attr-defined]
    assert remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"]) == []
    assert remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"] + "-poison") == []


def test_unreadable_messages_go_to_the_consumers_own_poison_queue_as_they_came(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite
) -> None:
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    add_company(url, "acme.example")
    raw = queue(azurite, env["HUNTER_D365_RESULTS_QUEUE"], encoded=False)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    junk = [
        "this is not base64 {",
        b64(b"\xff\xfe\x80 not utf-8"),
        b64(b"not json at all"),
        b64(json.dumps({"schema_version": 2, "domain": "acme.example", "status": "synced"}).encode()),
        b64(json.dumps({"schema_version": 1, "domain": "acme.example", "status": "synced", "at": "now"}).encode()),
    ]
    for text in junk:
        raw.send_message(text)
    good = send("acme.example", T0)
    wrapped = b64(good.encode())
    raw.send_message("\n".join(wrapped[i : i + 16] for i in range(0, len(wrapped), 16)))  # line-broken: readable
    counts = drain(settings(env))
    assert (counts.received, counts.poisoned, counts.applied, counts.stale) == (7, 5, 1, 1)
    assert sorted(remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"] + "-poison")) == sorted(junk)
    assert remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"]) == []
    assert seed_select(url, "acme.example") == (ID_1, "synced", T0)


def test_a_value_the_table_cannot_hold_is_poisoned_and_does_not_block_the_rest(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite
) -> None:
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    with psycopg.connect(url) as connection:  # a Hunter whose status column is too short for "synced"
        connection.execute("ALTER TABLE companies ALTER COLUMN d365_sync_status TYPE varchar(5)")
        connection.execute("INSERT INTO companies (domain, d365_sync_status) VALUES ('a.example', 'new')")
        connection.execute("INSERT INTO companies (domain, d365_sync_status) VALUES ('b.example', 'new')")
    send("a.example", T0)
    send("b.example", T0, status="error", error="boom")
    counts = drain(settings(env))
    assert (counts.poisoned, counts.applied) == (1, 1)
    assert company(url, "b.example")["d365_sync_status"] == "error"  # type: ignore[index]
    [poisoned] = remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"] + "-poison")
    assert json.loads(base64.b64decode(poisoned))["domain"] == "a.example"


def test_nothing_is_deleted_before_the_row_is_committed(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite
) -> None:
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    add_company(url, "acme.example")
    send("acme.example", T0)
    consumer = Consumer(settings(env, HUNTER_RESULTS_VISIBILITY_TIMEOUT_SECONDS="1"))
    consumer.connection().execute("SET lock_timeout = '200ms'")
    with psycopg.connect(url) as blocker:
        # Hunter holds the table against writers (a migration, say): the UPDATE cannot run.
        blocker.execute("LOCK TABLE companies IN SHARE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            consumer.drain()
    assert seed_select(url, "acme.example") == (None, "not_synced", None)
    # The message is still on the queue (invisible until its timeout), and the next drain applies it.
    counts = Consumer(settings(env)).drain()
    if counts.received == 0:  # still hidden: wait out the 1 s visibility timeout
        threading.Event().wait(1.5)
        counts = Consumer(settings(env)).drain()
    assert counts.applied == 1
    assert seed_select(url, "acme.example") == (ID_1, "synced", T0)


def test_two_consumers_at_once_end_with_the_newest_outcome_of_every_domain(
    env: dict[str, str], send: Callable[..., str]
) -> None:
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    domains = [f"d{i}.example" for i in range(4)]
    for domain in domains:
        add_company(url, domain)
    # Eight outcomes per domain, queued newest-first and interleaved, so the two consumers see
    # older ones after newer ones and the same domain at the same time.
    for step in reversed(range(8)):
        for domain in domains:
            lead = f"{step:08d}-0000-4000-8000-{domains.index(domain):012d}"
            send(domain, T0 + timedelta(seconds=step), d365_lead_id=lead)
    results: list[Any] = []
    small = settings(env, HUNTER_RESULTS_BATCH_SIZE="3")
    threads = [threading.Thread(target=lambda: results.append(drain(small))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(counts.received for counts in results) == 32
    assert sum(counts.applied for counts in results) >= 4
    for index, domain in enumerate(domains):
        assert seed_select(url, domain) == (
            f"00000007-0000-4000-8000-{index:012d}",
            "synced",
            T0 + timedelta(seconds=7),
        )


def test_by_managed_identity_as_in_azure(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Azurite in OAuth mode refuses requests without a token; the consumer gets one from the
    (simulated) managed-identity endpoint, with the `__queueServiceUri` settings Bicep writes."""
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{sim.base_url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", sim.identity_header)
    add_company(env["HUNTER_RESULTS_DATABASE_URL"], "acme.example")
    send("acme.example", T0)
    by_identity = {k: v for k, v in env.items() if k != "AzureWebJobsStorage"} | {
        "HUNTER_RESULTS_STORAGE_CONNECTION": "HunterQueues",
        **{k.replace("AzureWebJobsStorage", "HunterQueues"): v for k, v in azurite.identity_settings.items()},
    }
    counts = drain(ConsumerSettings.from_env(by_identity))
    assert counts.applied == 1
    assert seed_select(env["HUNTER_RESULTS_DATABASE_URL"], "acme.example") == (ID_1, "synced", T0)


def test_the_command_drains_once_and_prints_the_counts(
    env: dict[str, str], send: Callable[..., str], sim: Simulator
) -> None:
    add_company(env["HUNTER_RESULTS_DATABASE_URL"], "acme.example")
    send("acme.example", T0)
    send("nobody-has-this.example", T0)
    process = subprocess.run(
        [sys.executable, "-m", "hunter_results", "--once"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout) == {"received": 2, "applied": 1, "stale": 0, "unknown": 1, "poisoned": 0}
    events = [json.loads(line)["event"] for line in process.stderr.splitlines()]
    assert "hunter_results_applied" in events and "hunter_results_unknown_domain" in events
    assert "postgresql://" not in process.stderr


def test_the_command_names_a_missing_setting(tmp_path: Any) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "hunter_results", "--once"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 2 and "HUNTER_RESULTS_DATABASE_URL: required" in process.stderr


def test_the_command_refuses_a_table_that_is_not_there(env: dict[str, str], send: Callable[..., str]) -> None:
    send("acme.example", T0)
    process = subprocess.run(
        [sys.executable, "-m", "hunter_results", "--once"],
        cwd=ROOT,
        env={**os.environ, **env, "HUNTER_RESULTS_TABLE": "firms"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 1 and "UndefinedTable" in process.stderr


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "far future"])
def test_an_at_with_no_utc_value_or_from_the_future_is_poisoned_and_the_row_keeps_moving(
    env: dict[str, str], send: Callable[..., str], azurite: Azurite, at: str
) -> None:
    # Before issue 19 the first two raised OverflowError out of `drain` (a crash loop on one
    # message) and the third was applied and made every later outcome for the domain stale.
    url = env["HUNTER_RESULTS_DATABASE_URL"]
    add_company(url, "acme.example")
    now = datetime.now(UTC)
    text = iso(now + timedelta(days=3650)) if at == "far future" else at
    body = PushOutcome(
        domain="acme.example",
        status=SyncStatus.SYNCED,
        outcome=Outcome.CREATED,
        correlation_id="c-bad",
        d365_lead_id=ID_2,
        at=text,
    ).to_json()
    queue(azurite, env["HUNTER_D365_RESULTS_QUEUE"]).send_message(body)
    send("acme.example", now)  # a real outcome behind it
    counts = drain(settings(env))
    assert (counts.received, counts.poisoned, counts.applied) == (2, 1, 1)
    [poisoned] = remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"] + "-poison")
    assert json.loads(base64.b64decode(poisoned))["at"] == text
    assert remaining(azurite, env["HUNTER_D365_RESULTS_QUEUE"]) == []
    row = seed_select(url, "acme.example")
    assert row is not None and row[:2] == (ID_1, "synced")
