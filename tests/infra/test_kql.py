"""Every alert and workbook query passes Microsoft's Kusto language service; broken ones do not.

Runs tests/infra/kql_queries.py (Node + @kusto/language-service-next from package.json) on the real
queries and on changed copies of them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

pytest.importorskip("pycep", reason="the infra checks run in .venv-infra (infra/check.sh)")

from tests.infra import kql_queries

INFRA = Path(__file__).resolve().parents[2] / "infra"


def errors_in(queries: list[kql_queries.Query]) -> list[str]:
    return [str(error) for error in kql_queries.check(queries)]


def test_every_query_parses_and_binds_against_the_classic_tables() -> None:
    queries = kql_queries.all_queries(INFRA)
    assert {query.id for query in queries} >= {
        "alerts.bicep:failedPushesAlert[0]",
        "alerts.bicep:poisonBacklogAlert[0]",
        "alerts.bicep:gaugeSilentAlert[0]",
        "alerts.bicep:pushBacklogAlert[0]",
        "alerts.bicep:failedInvocationsAlert[0]",
        "workbook.json:poison-flow",
        "workbook.json:queue-depth",
        "workbook.json:dataverse-dependencies",
    }
    assert len(queries) == 15
    for query in queries:
        assert (
            "__POISON_QUEUE__" not in query.text
            and "__PUSH_QUEUE__" not in query.text
            and "{TimeRange" not in query.text
        ), query.id
    assert errors_in(queries) == []


def test_the_kind_column_before_the_fix_fails_with_ks228() -> None:
    """The workbook's poison query as it was: `kind` unbracketed."""
    fixed = next(query for query in kql_queries.workbook_queries(INFRA) if query.id == "workbook.json:poison-flow")
    assert "['kind']" in fixed.text
    original = kql_queries.Query("poison-flow (unfixed)", fixed.text.replace("['kind']", "kind"))
    found = errors_in([original])
    assert found and all(" KS228 " in error for error in found), found
    assert any("The name 'kind' needs to be bracketed as ['kind']" in error for error in found)


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("customDimensions.replayed", "customDimension.replayed", "KS142"),  # unknown column
        ("| summarize messages = sum(messages)", "| summarize messages = summ(messages)", "KS"),  # unknown function
        ("bin(timestamp, 1h)", "bin(timestamp, 1h", "KS"),  # syntax
    ],
)
def test_a_mutated_workbook_query_fails(tmp_path: Path, old: str, new: str, code: str) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    workbook = json.loads((copy / "workbook.json").read_text(encoding="utf-8"))
    tile = next(item for item in workbook["items"] if item.get("name") == "poison-flow")
    query = tile["content"]["query"].replace("{TimeRange:grain}", "1h")
    assert old in query, old
    tile["content"]["query"] = query.replace(old, new, 1)
    (copy / "workbook.json").write_text(json.dumps(workbook), encoding="utf-8")
    found = errors_in(kql_queries.all_queries(copy))
    assert found and all(error.startswith("workbook.json:poison-flow:") for error in found), found
    assert any(f" {code}" in error for error in found), found


POISON_HEAD = (
    '\ncustomMetrics\n| where name == "d365_queue_depth" and tostring(customDimensions.queue) == "__POISON_QUEUE__"'
)


@pytest.mark.parametrize(
    ("old", "new", "code", "rule"),
    [
        (
            "| project timestamp, depth = valueMax",
            "| project timestamp, depth = valueMax, severity",
            "KS142",
            "poisonBacklogAlert",
        ),
        ("depth = valueMax", "depth = valueMaximum", "KS142", "poisonBacklogAlert"),  # not a customMetrics column
        (
            POISON_HEAD,
            POISON_HEAD.replace("customMetrics", "customMetric"),
            "KS",
            "poisonBacklogAlert",
        ),  # no such table
        ("readings = valueCount", "readings = valueCounts", "KS142", "gaugeSilentAlert"),
        ("lowest = valueMin", "lowest = valueMinimum", "KS142", "pushBacklogAlert"),
        ("where success == false", "where succeeded == false", "KS142", "failedInvocationsAlert"),
    ],
)
def test_a_mutated_alert_query_fails(tmp_path: Path, old: str, new: str, code: str, rule: str) -> None:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    alerts = copy / "app" / "alerts.bicep"
    text = alerts.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    alerts.write_text(text.replace(old, new), encoding="utf-8")
    found = errors_in(kql_queries.all_queries(copy))
    assert any(error.startswith(f"alerts.bicep:{rule}[0]:") and code in error for error in found), found


def test_the_backlog_alert_and_the_depth_tile_read_the_gauge_the_app_emits() -> None:
    """customMetrics rows named as shared/gauges.py names the histogram, split by its `queue`."""
    # Read from the source: the infra venv does not install the app's packages.
    source = (INFRA.parent / "shared" / "gauges.py").read_text(encoding="utf-8")
    match = re.search(r'^METRIC_NAME = "([a-z0-9_]+)"$', source, re.MULTILINE)
    assert match, "shared/gauges.py no longer names METRIC_NAME"
    metric_name = match.group(1)
    queries = {query.id: query.text for query in kql_queries.all_queries(INFRA)}
    for query_id in ("alerts.bicep:poisonBacklogAlert[0]", "workbook.json:queue-depth"):
        text = queries[query_id]
        assert text.lstrip().startswith("customMetrics"), query_id
        assert f'name == "{metric_name}"' in text and "customDimensions.queue" in text, query_id
        assert "valueMax" in text, query_id
    for query_id in ("alerts.bicep:gaugeSilentAlert[0]", "alerts.bicep:pushBacklogAlert[0]"):
        assert f'name == "{metric_name}"' in queries[query_id], query_id
    push = queries["alerts.bicep:pushBacklogAlert[0]"]
    assert f'customDimensions.queue) == "{kql_queries.PUSH_QUEUE}"' in push and "valueMin" in push
    assert f'customDimensions.queue) == "{kql_queries.POISON_QUEUE}"' in queries["alerts.bicep:poisonBacklogAlert[0]"]
    assert "MaxDequeueCount" not in queries["alerts.bicep:poisonBacklogAlert[0]"]


def test_poison_counts_sum_item_count_so_sampling_cannot_hide_a_burst() -> None:
    """The host samples its traces (host.json), the MaxDequeueCount line among them."""
    poison = [q for q in kql_queries.all_queries(INFRA) if "MaxDequeueCount" in q.text]
    assert {q.id for q in poison} == {"workbook.json:poison-flow"}
    for query in poison:
        assert "* itemCount" in query.text, query.id
    for query in kql_queries.all_queries(INFRA):
        if query.text.lstrip().startswith("traces"):
            assert not re.search(r"\bcount\(\)", query.text), f"{query.id} counts rows of sampled traces"
