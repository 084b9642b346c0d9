"""`Pacer` on a hand-moved clock: slow start, the limit learned from a 429's own message, the
execution-time budget with requests in flight, and no request before a Retry-After has passed."""

from __future__ import annotations

import pytest

from shared.pacing import EXECUTION_LIMIT_CODE, REQUESTS_LIMIT_CODE, Pacer

REQUESTS_429 = "Number of requests exceeded the limit of 20 over time window of 10 seconds."
EXECUTION_429 = (
    "Combined execution time of incoming requests exceeded limit of 4,000 milliseconds over time window of "
    "10 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again later."
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_lone_request_never_waits() -> None:
    pacer = Pacer(clock=Clock())
    assert pacer.wait()[0] == 0.0


def test_slow_start_speeds_up_while_callers_wait() -> None:
    clock = Clock()
    pacer = Pacer(start_rate=5, growth=1.5, clock=clock)
    for _ in range(50):
        delay, _ = pacer.wait()
        clock.now += max(delay, 0.01)
    assert pacer.rate > 5 and pacer.ceiling is None


def test_the_first_429_sets_the_pace_from_its_message() -> None:
    clock = Clock()
    pacer = Pacer(start_rate=50, clock=clock)
    pacer.refused(REQUESTS_LIMIT_CODE, REQUESTS_429, retry_after=3)
    assert pacer.ceiling == pytest.approx(2.0) and pacer.rate == pytest.approx(2.0)
    assert pacer.ready_in() == pytest.approx(3.0)  # nothing before Retry-After
    clock.now += 3
    for _ in range(20):  # the window's 20 requests go together, and end 0.1 s later
        delay, estimate = pacer.wait()
        assert delay == 0 and estimate >= 0
    delay, estimate = pacer.wait()
    assert estimate == -1  # all 20 in flight: when room comes is not known yet
    clock.now += 0.1
    for _ in range(20):
        pacer.spent(100.0)
    delay, estimate = pacer.wait()
    # Counted from when they ended: room when the first of them leaves the window.
    assert delay == pytest.approx(10.0) and estimate >= 0


def test_another_429_at_the_same_limit_slows_down_and_recovers() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.refused(REQUESTS_LIMIT_CODE, REQUESTS_429)
    pacer.refused(REQUESTS_LIMIT_CODE, REQUESTS_429)
    slowed = pacer.rate
    assert slowed < 2.0
    clock.now += 30
    pacer.wait()
    assert pacer.rate == pytest.approx(2.0)


def test_execution_budget_counts_measured_time_and_requests_in_flight() -> None:
    clock = Clock()
    pacer = Pacer(start_rate=100, clock=clock)
    pacer.refused(EXECUTION_LIMIT_CODE, EXECUTION_429)
    # Learn the cost of a 100-record call, then fill the window.
    _, estimate = pacer.wait(100)
    pacer.spent(1000.0, 100, estimate)
    for _ in range(2):
        clock.now += 0.1
        delay, estimate = pacer.wait(100)
        assert delay == 0 and estimate == pytest.approx(1000.0)
        pacer.spent(1000.0, 100, estimate)
    clock.now += 0.1
    delay, in_flight = pacer.wait(100)  # 3000 ms spent: room for one more
    assert delay == 0
    clock.now += 0.1
    delay, _ = pacer.wait(100, max_wait=0)  # 3000 spent + 1000 in flight: the window is full
    assert delay == pytest.approx(10 - 0.4, abs=0.01)
    pacer.released(in_flight)
    assert pacer.ready_in(100) == 0


def test_a_wait_beyond_max_wait_reserves_nothing() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, max_wait=1)
    pacer.refused(REQUESTS_LIMIT_CODE, REQUESTS_429, retry_after=5)
    delay, estimate = pacer.wait()
    assert delay == pytest.approx(5) and estimate == 0
    assert pacer.wait()[0] == pytest.approx(5)  # the first call took no slot


@pytest.mark.parametrize("instances", [1, 4, 8])
def test_instances_sharing_one_user_keep_within_its_request_limit_together(instances: int) -> None:
    """Each of N pacers takes 1/N of the learned limit: the N together never offer more than one
    application user's 20 requests per 10 s window, however busy each one is."""
    clock = Clock()
    pacers = [Pacer(clock=clock, share=1 / instances) for _ in range(instances)]
    for pacer in pacers:
        pacer.refused(REQUESTS_LIMIT_CODE, REQUESTS_429)
        assert pacer.ceiling == pytest.approx(2.0 / instances)
    sent = 0
    for _ in range(300):  # 30 s of every pacer asking every 0.1 s
        for pacer in pacers:
            delay, estimate = pacer.wait(max_wait=0)
            if delay == 0 and estimate >= 0:
                pacer.spent(1.0, 0, estimate)
                sent += 1
        clock.now += 0.1
    # A sliding window that starts empty admits a window's worth at once, then 20 per 10 s.
    assert sent <= 20 * (1 + 30 / 10)


def test_a_share_divides_the_execution_budget_too() -> None:
    pacer = Pacer(clock=Clock(), share=0.25)
    pacer.refused(EXECUTION_LIMIT_CODE, EXECUTION_429)
    assert pacer.budget_ms == pytest.approx(1000.0)


def test_another_execution_time_429_lowers_the_budget_and_it_recovers() -> None:
    """An execution-time 429 with the budget already kept means others spend it too: spend less, as
    a second request 429 lowers the rate."""
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.refused(EXECUTION_LIMIT_CODE, EXECUTION_429)
    assert pacer.budget_ms == pytest.approx(4000.0)
    pacer.refused(EXECUTION_LIMIT_CODE, EXECUTION_429)
    assert pacer.budget_ms == pytest.approx(3600.0)
    clock.now += 30
    pacer.wait()
    assert pacer.budget_ms == pytest.approx(4000.0)


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        Pacer(share=share)
