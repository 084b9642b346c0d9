"""The local host's timer listener in real time (threads and a real clock, so an integration
test): runs of one timer never overlap, an overrun occurrence runs once right after, run_on_startup
runs at once, a failing run does not stop the schedule (devstack/host/timers.py names the
sources)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from devstack.host.timers import TimerListener
from devstack.host.worker import Worker


def test_runs_never_overlap_and_overrun_occurrences_collapse_into_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2.5 s run on an every-second schedule: one run at a time, the next starting right after."""
    monkeypatch.setenv("EVERY_SECOND", "* * * * * *")
    running = []
    spans: list[tuple[float, float]] = []
    lock = threading.Lock()

    def slow(timer: Any) -> None:
        with lock:
            running.append(1)
            assert len(running) == 1, "two runs of one timer overlapped"
        started = time.monotonic()
        time.sleep(2.5)
        spans.append((started, time.monotonic()))
        with lock:
            running.pop()

    worker = Worker(4, None)
    listener = TimerListener("slow", slow, {"name": "timer", "schedule": "%EVERY_SECOND%"}, worker)
    stop = threading.Event()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(6.2)
    stop.set()
    thread.join(timeout=5)
    worker.shutdown()
    assert 2 <= len(spans) <= 3, spans
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert 0 <= start - end < 2.0, "the overrun occurrence should run at once, and only once"


def test_run_on_startup_runs_at_once_and_a_failure_does_not_stop_the_schedule() -> None:
    calls: list[float] = []

    def failing(timer: Any) -> None:
        calls.append(time.monotonic())
        assert timer.past_due is False
        raise RuntimeError("boom")

    worker = Worker(2, None)
    trigger = {"name": "timer", "schedule": "0 0 0 1 1 *", "runOnStartup": True}  # next: New Year
    listener = TimerListener("startup", failing, trigger, worker)
    stop = threading.Event()
    started = time.monotonic()
    thread = threading.Thread(target=listener.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=5)
    worker.shutdown()
    assert len(calls) == 1 and calls[0] - started < 1
    assert not thread.is_alive()

    every = TimerListener("again", failing, {"name": "timer", "schedule": "* * * * * *"}, Worker(2, None))
    stop = threading.Event()
    thread = threading.Thread(target=every.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(2.6)
    stop.set()
    thread.join(timeout=5)
    assert every.invocations >= 2
