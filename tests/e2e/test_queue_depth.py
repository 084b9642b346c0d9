"""The queue-depth timer on the local host: the schedule comes from its app setting, the host runs
it, and the `d365_queue_depth` event carries the real counts of the push and poison queues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.conftest import Stack


def latest_depths(stack: Stack) -> dict[str, int]:
    return {str(e["queue"]): int(e["approximate_count"]) for e in stack.events("d365_queue_depth")}


def test_the_timer_reports_the_real_depth_of_both_queues(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_QUEUE_DEPTH_SCHEDULE="*/1 * * * * *")
    push, poison = stack.queue_name, f"{stack.queue_name}-poison"
    # Invisible for a minute: counted by the queue, not taken by the worker meanwhile.
    for number in range(3):
        stack.queue(push).send_message(f'{{"n": {number}}}', visibility_timeout=60)
    for number in range(2):
        stack.queue(poison).send_message(f'{{"poisoned": {number}}}')

    stack.wait_for(lambda: latest_depths(stack) == {push: 3, poison: 2}, timeout=20, what="depths 3 and 2")

    stack.queue(poison).clear_messages()
    stack.wait_for(lambda: latest_depths(stack) == {push: 3, poison: 0}, timeout=20, what="poison emptied")
    started = [e for e in stack.logs if e.get("event") == "host_started"]
    assert started and started[0]["timers"] == {"queue_depth": "Cron: '*/1 * * * * *'"}


def test_each_run_reads_both_queues_once(start_stack: Callable[..., Stack]) -> None:
    stack = start_stack(HUNTER_D365_QUEUE_DEPTH_SCHEDULE="*/1 * * * * *")
    stack.wait_for(
        lambda: len(stack.events("d365_queue_depth")) >= 8, timeout=20, what="four runs"
    )  # every second: eight readings
    times = sorted({str(e["time"]) for e in stack.events("d365_queue_depth")})
    # One run per occurrence: each run logs both queues within the same second.
    counts: dict[str, int] = {}
    for event in stack.events("d365_queue_depth"):
        counts[str(event["time"])] = counts.get(str(event["time"]), 0) + 1
    assert all(n == 2 for n in list(counts.values())[:-1]), counts
    assert len(times) >= 3


def test_without_its_schedule_setting_only_the_timer_is_disabled(start_stack: Callable[..., Stack]) -> None:
    """The real host fails that function's indexing and runs the rest (FunctionIndexer)."""
    stack = start_stack()
    assert stack.http.get(f"{stack.url}/api/healthz/live", timeout=5).status_code == 200
    disabled: list[dict[str, Any]] = [
        e for e in stack.logs if e.get("event") == "Function 'queue_depth' failed indexing and will be disabled."
    ]
    assert disabled and disabled[0]["level"] == "WARNING"
    [failure] = stack.events("host_function_indexing_failed")
    assert "HUNTER_D365_QUEUE_DEPTH_SCHEDULE" in failure["error"]
    assert stack.events("d365_queue_depth") == []
