"""Hunter's results consumer without I/O: reading messages as they lie on the queue, the settings,
the quoted SQL, the wire contract against the app's, and the loop's backoff."""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from hunter_results import outcome as wire
from hunter_results.consumer import Consumer, Counts
from hunter_results.outcome import Unreadable, read_message
from hunter_results.settings import ConfigError, ConsumerSettings
from hunter_results.table import HunterTable
from shared import models
from shared.models import Outcome, PushOutcome, SyncStatus

LEAD_ID = "6f1c2a9e-0b7d-4c1e-9a55-3d2f8e4b1c00"
ENV = {"HUNTER_RESULTS_DATABASE_URL": "postgresql://hunter:s3cret@db/hunter", "AzureWebJobsStorage": "UseDev"}


def outcome_json(**fields: Any) -> str:
    body = PushOutcome(
        domain="acme.example",
        status=SyncStatus.SYNCED,
        outcome=Outcome.CREATED,
        correlation_id="c-1",
        d365_lead_id=LEAD_ID,
        at="2026-01-30T10:00:00.123Z",
    ).to_json()
    data = {**json.loads(body), **fields}
    return json.dumps({key: value for key, value in data.items() if value is not None})


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def test_reads_what_the_app_publishes_base64_as_the_queue_holds_it() -> None:
    read = read_message(b64(outcome_json()))
    assert read.domain == "acme.example" and read.status == "synced" and read.d365_lead_id == LEAD_ID
    assert read.at == datetime(2026, 1, 30, 10, 0, 0, 123000, tzinfo=UTC)
    assert read.outcome == "created" and read.correlation_id == "c-1"


def test_tolerates_what_poison_replay_tolerates_line_breaks_and_raw_json() -> None:
    wrapped = b64(outcome_json())
    broken = "\n".join(wrapped[i : i + 16] for i in range(0, len(wrapped), 16))
    assert read_message(broken).domain == "acme.example"
    assert read_message(outcome_json()).domain == "acme.example"  # JSON written without base64
    assert read_message(b64(outcome_json()).encode()).domain == "acme.example"  # bytes


def test_an_error_outcome_needs_no_lead_id_and_keeps_the_reason() -> None:
    read = read_message(b64(outcome_json(status="error", outcome="failed", d365_lead_id=None, error="HTTP 500")))
    assert read.status == "error" and read.d365_lead_id is None and read.error == "HTTP 500"


def test_unknown_extra_fields_are_ignored() -> None:
    assert read_message(b64(outcome_json(new_field={"x": 1}))).domain == "acme.example"


def test_a_naive_time_is_utc() -> None:
    assert read_message(outcome_json(at="2026-01-30T10:00:00")).at.tzinfo == UTC


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("this is not base64 {", "not JSON"),
        (b64(b"\xff\xfe\x80 not utf-8"), "not UTF-8"),
        (b64("not json at all"), "not JSON"),
        (b64("[1, 2]"), "not a JSON object"),
        ("", "not JSON"),
        (b64(outcome_json(schema_version=2)), "schema_version"),
        (b64(outcome_json(schema_version=True)), "schema_version"),
        (b64(outcome_json(domain="")), "domain: required"),
        (b64(outcome_json(domain="a\nb")), "domain"),
        (b64(outcome_json(status="queued")), "status"),
        (b64(outcome_json(at=None)), "at: required"),
        (b64(outcome_json(at="yesterday")), "at: must be"),
        (b64(outcome_json(d365_lead_id=None)), "d365_lead_id: required"),
        (b64(outcome_json(d365_lead_id="not-a-guid")), "d365_lead_id: must be a GUID"),
        (b64(outcome_json(error=42)), "error"),
        (b64("x" * 200_000), "larger"),
    ],
)
def test_unreadable_messages_say_why_without_echoing_them(content: str, reason: str) -> None:
    with pytest.raises(Unreadable) as caught:
        read_message(content)
    assert reason in str(caught.value)
    assert "acme" not in str(caught.value)


def test_the_wire_contract_matches_the_apps() -> None:
    assert wire.SCHEMA_VERSION == models.SCHEMA_VERSION
    assert wire.SYNCED == models.SYNCED and wire.ERROR == models.ERROR
    # Every field the consumer reads is a field of the app's PushOutcome.
    assert {"domain", "status", "at", "d365_lead_id", "error", "outcome", "correlation_id"} <= set(
        PushOutcome.__dataclass_fields__
    )


def test_settings_default_to_the_seeds_names() -> None:
    settings = ConsumerSettings.from_env(ENV)
    assert settings.table == ("companies",)
    assert (settings.domain_column, settings.lead_id_column, settings.status_column) == (
        "domain",
        "d365_lead_id",
        "d365_sync_status",
    )
    assert (settings.last_at_column, settings.error_column) == ("d365_sync_last_at", "d365_sync_error")
    assert settings.queue_name == "d365-lead-push-results"
    assert settings.poison_queue_name == "d365-lead-push-results-poison"
    assert settings.storage_connection == "UseDev" and not settings.queue_service_uri
    assert "s3cret" not in repr(settings)


def test_identity_settings_follow_the_functions_connection_convention() -> None:
    settings = ConsumerSettings.from_env(
        {
            "HUNTER_RESULTS_DATABASE_URL": "postgresql:///hunter",
            "HUNTER_RESULTS_STORAGE_CONNECTION": "HunterQueues",
            "HunterQueues__queueServiceUri": "https://st1.queue.core.windows.net/",
            "HunterQueues__credential": "managedidentity",
            "HunterQueues__clientId": "abc",
        }
    )
    assert settings.queue_service_uri == "https://st1.queue.core.windows.net"
    assert (settings.credential, settings.client_id, settings.storage_connection) == ("managedidentity", "abc", "")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"HUNTER_RESULTS_DATABASE_URL": ""}, "HUNTER_RESULTS_DATABASE_URL"),
        ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage"),
        ({"HUNTER_RESULTS_TABLE": "a.b.c"}, "HUNTER_RESULTS_TABLE"),
        ({"HUNTER_RESULTS_STATUS_COLUMN": "x" * 64}, "HUNTER_RESULTS_STATUS_COLUMN"),
        ({"HUNTER_RESULTS_DOMAIN_COLUMN": "a\x00b"}, "HUNTER_RESULTS_DOMAIN_COLUMN"),
        ({"HUNTER_D365_RESULTS_QUEUE": "Bad_Name"}, "HUNTER_D365_RESULTS_QUEUE"),
        ({"HUNTER_RESULTS_BATCH_SIZE": "33"}, "HUNTER_RESULTS_BATCH_SIZE"),
        ({"HUNTER_RESULTS_POLL_MAX_SECONDS": "lots"}, "HUNTER_RESULTS_POLL_MAX_SECONDS"),
        ({"AzureWebJobsStorage__queueServiceUri": "http://plain"}, "AzureWebJobsStorage__queueServiceUri"),
    ],
)
def test_a_bad_setting_is_named_and_the_database_url_never_shown(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ConsumerSettings.from_env({**ENV, **change})
    assert str(caught.value).startswith(named) and "s3cret" not in str(caught.value)


def test_table_and_column_names_are_quoted_identifiers() -> None:
    settings = ConsumerSettings.from_env(
        {**ENV, "HUNTER_RESULTS_TABLE": "crm.Companies", "HUNTER_RESULTS_STATUS_COLUMN": 'x"; DROP TABLE t; --'}
    )
    table = HunterTable(settings)
    text = table.failed.as_string()
    assert text.startswith('UPDATE "crm"."Companies" SET "x""; DROP TABLE t; --" = %(status)s')
    assert '"d365_sync_last_at" < %(at)s' in text


class IdleConsumer(Consumer):
    """A consumer whose drains return scripted counts (or raise), without queues or a database."""

    def __init__(self, script: list[int | Exception], stop: threading.Event) -> None:
        super().__init__(ConsumerSettings.from_env({**ENV, "HUNTER_RESULTS_BATCH_SIZE": "4"}))
        self.script = script
        self.stop = stop

    def drain(self, max_messages: int | None = None) -> Counts:
        step = self.script.pop(0)
        if not self.script:
            self.stop.set()
        if isinstance(step, Exception):
            raise step
        return Counts(received=step)


def test_the_loop_backs_off_while_idle_or_failing_and_drains_at_once_while_busy() -> None:
    import psycopg

    stop = threading.Event()
    waits: list[float] = []
    consumer = IdleConsumer(
        [0, 0, 0, 4, 2, 0, psycopg.OperationalError("down"), psycopg.OperationalError("down")], stop
    )
    consumer.settings = ConsumerSettings.from_env(
        {**ENV, "HUNTER_RESULTS_BATCH_SIZE": "4", "HUNTER_RESULTS_POLL_MIN_SECONDS": "0.01"}
        | {"HUNTER_RESULTS_POLL_MAX_SECONDS": "0.03"}
    )
    totals = consumer.run(stop, on_idle=waits.append)
    # idle ×3 (doubling to the cap), a full batch (no wait), a partial one (min), idle, failing ×2.
    assert waits == [0.01, 0.02, 0.03, 0.01, 0.02, 0.03, 0.03]
    assert totals.received == 6


def test_every_setting_the_consumer_reads_is_in_its_manual() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = (root / "hunter_results" / "settings.py").read_text()
    read = set(re.findall(r'"((?:HUNTER_)[A-Z0-9_]+)"', code))
    assert len(read) >= 14
    readme = (root / "docs" / "consumer.md").read_text()
    section = readme.split("## Hunter's side: the results consumer", 1)[1].split("\n## ", 1)[0]
    assert not {name for name in read if name not in section}
    for suffix in ("__queueServiceUri", "__credential", "__clientId"):
        assert f"<prefix>{suffix}" in section and f'f"{{prefix}}{suffix}"' in code
    # Outside the function app's deployment.
    assert "hunter_results/" in (root / ".funcignore").read_text().splitlines()
