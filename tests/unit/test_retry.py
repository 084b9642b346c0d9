"""The backoff policy of the seed: 60 s · 2^n, cap 3600 s, 0–10 s jitter, Retry-After as a floor."""

import pytest

from shared.retry import RetryPolicy, Throttle, queue_delay

SEED = RetryPolicy(base_seconds=60, cap_seconds=3600, jitter_seconds=10, max_attempts=6)


@pytest.mark.parametrize(("attempt", "expected"), [(0, 60), (1, 120), (2, 240), (5, 1920), (6, 3600), (40, 3600)])
def test_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert SEED.delay(attempt, rand=lambda: 0.0) == expected


def test_jitter_adds_up_to_ten_seconds() -> None:
    assert SEED.delay(0, rand=lambda: 0.999) == pytest.approx(69.99)
    delays = {SEED.delay(1) for _ in range(50)}
    assert all(120 <= d < 130 for d in delays) and len(delays) > 1


def test_retry_after_is_a_floor_not_a_ceiling() -> None:
    assert SEED.delay(0, retry_after=300, rand=lambda: 0.0) == 300
    assert SEED.delay(3, retry_after=5, rand=lambda: 0.0) == 480


def test_huge_attempt_counts_do_not_overflow() -> None:
    assert SEED.delay(10_000, rand=lambda: 0.0) == 3600


def test_exhausted_after_max_attempts() -> None:
    assert not SEED.exhausted(4)
    assert SEED.exhausted(5)


def test_queue_delay_rounds_up_and_clamps() -> None:
    assert queue_delay(0.2) == 1
    assert queue_delay(-3) == 0
    assert queue_delay(10**9) == 7 * 24 * 3600


def test_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError):
        SEED.delay(-1)


def test_throttle_holds_every_caller_until_the_longest_retry_after() -> None:
    now = [100.0]
    throttle = Throttle(clock=lambda: now[0])
    assert throttle.remaining() == 0
    throttle.pause(5)
    throttle.pause(2)  # a shorter pause never shortens the current one
    assert throttle.remaining() == 5
    now[0] += 4
    assert throttle.remaining() == 1
    now[0] += 1
    assert throttle.remaining() == 0


def test_deferrals_use_the_policy_numbers() -> None:
    policy = RetryPolicy(base_seconds=60, jitter_seconds=10, claim_retry_seconds=5)
    assert policy.disabled_delay() == 60
    assert policy.throttled_delay(30, rand=lambda: 0.0) == 30
    assert policy.throttled_delay(30, rand=lambda: 0.5) == 35
    assert policy.claimed_delay(rand=lambda: 0.0) == 5
    assert policy.claimed_delay(rand=lambda: 0.999) == pytest.approx(9.995)
