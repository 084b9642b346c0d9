"""The retry policy, pure: what to do after a failed Dataverse call (`decide`), and how long a
message that could not be tried at all stays away. The only place in the app where a delay is
computed (docs/design.md §6).

`decide(error, attempt, throttled_seconds)`:

- a 429 (service protection; the error carries `retry_after`) → retry after `Retry-After` plus
  jitter, **without using an attempt**: the limit concerns the application user, not the lead
  (api-limits.md: wait for the Retry-After duration, then send again). The seconds a message has
  spent waiting out service protection travel with it (`throttled_seconds`); past
  `max_throttled_seconds` it is given up, so no lead stays throttled forever;
- a transient error (5xx, timeouts, lost answers, a bug) → `base · 2^attempt` (60 s, 120 s, 240 s,
  …) capped at 3600 s, plus 0–10 s of jitter, using one attempt; the last attempt gives up;
- anything else (authentication, a permanent 4xx, configuration) → give up at once.

A deferral uses no attempt: the integration is off (one base interval), this process is waiting
out a 429 (the rest of the pause plus jitter), or another worker holds the domain
(`claim_retry_seconds`, up to doubled at random so that the waiting copies do not come back
together). Every number comes from settings so tests can run the same policy in milliseconds.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# Azure Storage queues accept a visibility timeout of at most 7 days.
MAX_QUEUE_DELAY_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class Decision:
    """What to do with the leads a failed call concerned."""

    action: Literal["retry", "give_up"]
    delay: float = 0.0  # seconds until the retry (0 when giving up)
    uses_attempt: bool = False  # the retry counts against `max_attempts`
    throttled: bool = False  # service protection: the delay adds to the message's throttled time
    reason: str = ""  # why it gives up: permanent | attempts_exhausted | throttled_too_long


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with a cap and jitter; `Retry-After` honoured without using an attempt."""

    base_seconds: float = 60.0
    cap_seconds: float = 3600.0
    jitter_seconds: float = 10.0
    max_attempts: int = 6
    claim_retry_seconds: float = 5.0
    max_throttled_seconds: float = 21600.0

    def decide(
        self,
        error: BaseException,
        attempt: int,
        throttled_seconds: float = 0.0,
        rand: Callable[[], float] = random.random,
    ) -> Decision:
        """The rule for a call that failed with `error` on attempt number `attempt` (0-based) of a
        message that has already waited `throttled_seconds` for service protection. Reads the
        error by duck type: `retry_after` (a 429) and `transient` (worth the same call later)."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            if throttled_seconds >= self.max_throttled_seconds:
                return Decision("give_up", reason="throttled_too_long")
            return Decision("retry", self.throttled_delay(float(retry_after), rand), throttled=True)
        if not getattr(error, "transient", False):
            return Decision("give_up", reason="permanent")
        if self.exhausted(attempt):
            return Decision("give_up", reason="attempts_exhausted")
        return Decision("retry", self.delay(attempt, None, rand), uses_attempt=True)

    def may_wait_throttled(self, throttled_seconds: float) -> bool:
        """True while a message may still be put off for service protection (before any call)."""
        return throttled_seconds < self.max_throttled_seconds

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
