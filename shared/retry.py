"""The retry policy, pure: how long to wait before attempt n+1, and before a message that could
not be tried at all comes back.

The seed's numbers: `base · 2^attempt` (60 s, 120 s, 240 s, …) capped at 3600 s, plus 0–10 s of
jitter; a `Retry-After` from Dataverse is a floor, never shortened by the backoff. A deferral uses
no attempt: the integration is off (one base interval), this process is waiting out a 429 (the
rest of the pause plus jitter), or another worker holds the domain (`claim_retry_seconds`, up to
doubled at random so that the waiting copies do not come back together). Every number comes from
settings so tests can run the same policy in milliseconds.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Azure Storage queues accept a visibility timeout of at most 7 days.
MAX_QUEUE_DELAY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with a cap, jitter and a `Retry-After` floor."""

    base_seconds: float = 60.0
    cap_seconds: float = 3600.0
    jitter_seconds: float = 10.0
    max_attempts: int = 6
    claim_retry_seconds: float = 5.0

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after failed attempt number `attempt` (0 for the first attempt).

        Raises:
            ValueError: `attempt` is negative.
        """
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # 2**attempt overflows float for absurd attempt counts; the cap applies long before.
        exponent = min(attempt, 62)
        backoff = min(self.cap_seconds, self.base_seconds * math.pow(2, exponent))
        delay = backoff + self.jitter_seconds * rand()
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return min(delay, MAX_QUEUE_DELAY_SECONDS)

    def disabled_delay(self) -> float:
        """Seconds before a message that arrived while the integration was off is looked at again."""
        return self.base_seconds

    def throttled_delay(self, paused: float, rand: Callable[[], float] = random.random) -> float:
        """Seconds before a message comes back while this process waits out a 429 for `paused`
        more seconds: the pause, plus jitter so the held-back messages do not return at once."""
        return paused + self.jitter_seconds * rand()

    def claimed_delay(self, rand: Callable[[], float] = random.random) -> float:
        """Seconds before a message comes back whose domain another worker holds: between one and
        two `claim_retry_seconds`."""
        return self.claim_retry_seconds * (1 + rand())

    def exhausted(self, attempt: int) -> bool:
        """True when attempt number `attempt` (0-based) was the last one allowed."""
        return attempt + 1 >= self.max_attempts


def queue_delay(seconds: float) -> int:
    """A delay as the whole seconds a queue's visibility timeout takes (rounded up, never less)."""
    return max(0, min(MAX_QUEUE_DELAY_SECONDS, math.ceil(seconds)))


class Throttle:
    """A process-wide pause after a 429: Dataverse's `Retry-After` applies to the caller (the
    application user), not to one request, so every worker thread of this process waits it out
    instead of each collecting its own 429 (which, in Dataverse, makes `Retry-After` grow)."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """No Dataverse calls for `seconds` from now (a longer pause already set wins)."""
        with self._lock:
            self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        """Seconds left in the current pause (0 when calls may go ahead)."""
        with self._lock:
            return max(0.0, self._until - self._clock())
