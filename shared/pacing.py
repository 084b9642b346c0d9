"""`Pacer`: keeps this process's Dataverse requests under the service-protection limits the service
itself reports, instead of running into them over and over.

Microsoft's advice (api-limits.md, "How to maximize throughput" and "The Retry-After duration"):
don't compute a rate in advance — start lower, increase gradually until the limits answer, then
let the server tell you how much it can handle, and keep the rate steady so Retry-After stays short.
The pacer does exactly that:

- Before any 429, requests go out at `start_rate` per second, and the rate grows by `growth` for
  every second in which callers had to wait for it (slow start): a single click never waits, a
  batch finds the ceiling within seconds, and when it crosses it only the few requests in flight
  at that moment are refused (a sliding-window limit refuses nothing until the window is full).
- A 429 names its limit in its message (api-limits.md, "Service Protection API Limit Errors
  returned"): `Number of requests exceeded the limit of 6000 over time window of 300 seconds.`
  (0x80072322) and `Combined execution time of incoming requests exceeded limit of 1,200,000
  milliseconds over time window of 300 seconds.` (0x80072321). The pacer reads both: from then
  on no more requests go in any window than the limit, counted so that this process's count is
  never below the service's (requests by when they ended, plus those in flight) — the service's own
  sliding window, so requests may go together; and a request goes only while the execution time
  this process measured in the last window (elapsed time per request, an upper bound of the
  server's), plus its estimate for the requests still in flight, is under the execution limit —
  the service's own rule, so at most one request's time goes past it.
- Another 429 after that (another instance shares the user's limit) cuts the rate by a tenth; it
  recovers by 2 % of the learned ceiling per second without one. An execution-time 429 after the
  budget is known cuts the execution budget the same way, and it recovers the same way.

**One budget for every instance** (DESIGN §6). The limits are per application user per web server
(Microsoft Learn, "Service protection API limits",
https://learn.microsoft.com/power-apps/developer/data-platform/api-limits), and every instance
signs in as the same application user, so each 429 teaches an instance the limit of the whole app,
not its own. Dataverse offers no way to coordinate: its `x-ms-ratelimit-*` response headers are
documented for diagnostics, not as a budget to pace on (shared/reference/dataverse-wire.md). So
the pacer divides: it uses `share` of every limit it learns, the fraction
`HUNTER_D365_RATE_BUDGET_PERCENT` / 100 ÷ `HUNTER_D365_MAX_INSTANCES` (`shared/config.py`; Bicep sets the second
from `maximumInstanceCount`). However many instances run, up to that cap, their sum stays inside
one user's window limits; the price is that fewer running instances use less than the whole budget,
so `maximumInstanceCount` should be the number that saturates it (docs/performance.md).
- Nothing is sent until a 429's Retry-After has passed; a request that slept through a 429 takes a
  new slot, so the threads that were waiting do not all go at once when the pause ends.

A wait longer than `max_wait` is not slept through: `wait()` returns it for the caller to turn
into a delayed retry (the queue does the waiting, not a worker thread).
"""

from __future__ import annotations

import bisect
import collections
import re
import threading
import time
from collections.abc import Callable

REQUESTS_LIMIT_CODE = "0x80072322"
EXECUTION_LIMIT_CODE = "0x80072321"
_LIMIT = re.compile(r"limit of ([\d,]+(?:\.\d+)?)\s+(milliseconds\s+)?over time window of ([\d.]+) seconds")


def parse_limit(message: str) -> tuple[float, float] | None:
    """(limit, window seconds) from a service-protection 429's message, or None."""
    match = _LIMIT.search(message)
    if not match:
        return None
    limit = float(match.group(1).replace(",", ""))
    window = float(match.group(3))
    return (limit, window) if limit > 0 and window > 0 else None


class Pacer:
    """Paces requests (thread-safe, one per process: the limits are per user)."""

    def __init__(
        self,
        start_rate: float = 5.0,
        growth: float = 1.5,
        headroom: float = 0.97,
        max_wait: float = 10.0,
        clock: Callable[[], float] | None = None,
        share: float = 1.0,
    ) -> None:
        """`share` (0-1]: the fraction of each learned limit this process may use (see the module
        docstring: the app's rate budget divided by the instances that share it)."""
        if not 0 < share <= 1:
            raise ValueError("share must be within (0, 1]")
        self.share = share
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._rate = start_rate
        self._growth = growth
        self._headroom = headroom
        self.max_wait = max_wait
        self._next = 0.0  # when the next request may go (slow start; a Retry-After)
        # When this process's requests ended (an answer or a dropped connection), sorted, and how
        # many are reserved or in flight. The service counts a request in its window from when it
        # arrives, which is before it ends: counting ends plus everything in flight is never less
        # than the service's count, so this process alone cannot overrun the request limit.
        self._sent: list[float] = []
        self._pending = 0
        self._grown_at = self._clock()
        self._ceiling: float | None = None  # requests/s the service allows, once a 429 said
        self._last_429 = 0.0
        self.refusals = 0  # 429s seen: a request that slept through one takes a new slot
        self._budget_ms: float | None = None  # this process's execution ms per window, once a 429 said
        self._budget_factor = 1.0  # cut by later execution-time 429s, as the rate is by request 429s
        self._budget_grown_at = 0.0
        self._window = 300.0
        self._spent: collections.deque[tuple[float, float]] = collections.deque()
        self._spent_ms = 0.0
        # Execution time of the requests in flight, estimated from what earlier ones took: a
        # request's own cost is only known when it ends, and threads that all found room at once
        # would otherwise all go.
        self._in_flight_ms = 0.0
        self._base_ms = 0.0  # per request
        self._record_ms = 0.0  # per record written

    @property
    def rate(self) -> float:
        """The current pace, requests per second."""
        with self._lock:
            return self._rate

    @property
    def budget_ms(self) -> float | None:
        """This process's execution-time budget per window (its share, after cuts), or None."""
        with self._lock:
            return None if self._budget_ms is None else self._budget_ms * self._budget_factor

    @property
    def ceiling(self) -> float | None:
        """The request ceiling learned from a 429 (requests per second), or None."""
        with self._lock:
            return self._ceiling

    def wait(self, records: int = 0, max_wait: float | None = None) -> tuple[float, float]:
        """Reserve the next slot for a request that writes `records` records: (seconds until it
        may go, 0 for now; its estimated execution time, to hand back to `spent`). A delay above
        `max_wait` (default `self.max_wait`) reserves nothing; the caller retries that much later.
        An estimate of -1 reserves nothing either: ask again after the delay (every request the
        window holds is still in flight, so when room comes is not known yet)."""
        limit = self.max_wait if max_wait is None else max_wait
        with self._lock:
            now = self._clock()
            self._recover(now)
            estimate = self._base_ms + self._record_ms * records
            room = self._request_room(now)
            if room is None:
                return max(0.01, min(limit, self._window / 50)), -1.0
            slot = max(now, self._next, room, self._execution_room(now))
            delay = slot - now
            if delay > limit:
                return delay, 0.0
            if self._ceiling is None:
                if delay > 0 and now - self._grown_at >= 1.0:
                    # Callers are waiting for the pace and the service has not objected: go faster.
                    self._rate *= self._growth
                    self._grown_at = now
                self._next = slot + 1.0 / self._rate
            self._pending += 1
            self._in_flight_ms += estimate
            return delay, estimate

    def ready_in(self, records: int = 0) -> float:
        """Seconds until a request writing `records` records could go (nothing is reserved)."""
        with self._lock:
            now = self._clock()
            room = self._request_room(now)
            return max(now, self._next, now if room is None else room, self._execution_room(now)) - now

    def spent(self, elapsed_ms: float, records: int = 0, estimate: float = 0.0) -> None:
        """Record how long a request took (its execution time, as this process can measure it),
        releasing the `estimate` `wait` reserved for it."""
        with self._lock:
            now = self._clock()
            self._in_flight_ms = max(0.0, self._in_flight_ms - estimate)
            self._pending = max(0, self._pending - 1)
            # Kept from the start: when the limit becomes known, the window already holds the
            # requests sent while it was being found.
            bisect.insort(self._sent, now)
            self._spent.append((now, elapsed_ms))
            self._spent_ms += elapsed_ms
            if records:
                per_record = max(0.0, elapsed_ms - self._base_ms) / records
                self._record_ms = per_record if not self._record_ms else 0.8 * self._record_ms + 0.2 * per_record
            else:
                self._base_ms = elapsed_ms if not self._base_ms else 0.8 * self._base_ms + 0.2 * elapsed_ms
            self._forget(now)

    def released(self, estimate: float) -> None:
        """A reserved request was refused (a 429, which the service does not count) or never sent:
        drop its reservation."""
        with self._lock:
            self._in_flight_ms = max(0.0, self._in_flight_ms - estimate)
            self._pending = max(0, self._pending - 1)

    def refused(self, code: str, message: str, retry_after: float = 0.0) -> None:
        """A 429 arrived with Dataverse's `code`, `message` and `Retry-After`: learn its limit,
        slow down, and send nothing before `retry_after` has passed."""
        limit = parse_limit(message)
        with self._lock:
            now = self._clock()
            self.refusals += 1
            self._next = max(self._next, now + retry_after)
            if code == EXECUTION_LIMIT_CODE and limit is not None:
                budget = limit[0] * self.share
                if self._budget_ms != budget:
                    self._budget_ms, self._window = budget, limit[1]
                else:  # the budget was already kept: others spend it too, so spend less
                    self._budget_factor = max(0.1, self._budget_factor * 0.9)
                self._last_429 = now
                return
            if limit is None:
                self._rate = max(0.1, self._rate * 0.8)
                return
            ceiling = limit[0] / limit[1] * self.share
            if self._ceiling != ceiling:
                self._ceiling = ceiling
                self._window = limit[1]
                self._rate = ceiling  # counted conservatively (see `_sent`): the limit itself
            else:
                self._rate = max(ceiling / 10, self._rate * 0.9)
            self._last_429 = now

    def _recover(self, now: float) -> None:
        if self._budget_factor < 1.0 and now - self._last_429 >= 1.0:
            self._budget_factor = min(
                1.0, self._budget_factor + 0.02 * (now - max(self._last_429, self._budget_grown_at))
            )
            self._budget_grown_at = now
        if self._ceiling is None:
            return
        cap = self._ceiling
        if self._rate < cap and now - self._last_429 >= 1.0:
            self._rate = min(cap, self._rate + 0.02 * self._ceiling * (now - max(self._last_429, self._grown_at)))
            self._grown_at = now

    def _request_room(self, now: float) -> float | None:
        """Once the limit is known: when this process's requests in the last window (ended, in
        flight, reserved) drop under its pace × the window — the service's own sliding window, so
        requests may go together (a bulk lookup need not queue behind another message's create).
        None when every request holding the window is still in flight."""
        cut = bisect.bisect_right(self._sent, now - self._window)
        del self._sent[:cut]
        if self._ceiling is None:
            return now
        allowed = max(1, int(self._rate * self._window))
        over = len(self._sent) + self._pending - allowed
        if over < 0:
            return now
        return self._sent[over] + self._window if over < len(self._sent) else None

    def _forget(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self._window:
            self._spent_ms -= self._spent.popleft()[1]

    def _execution_room(self, now: float, extra_ms: float = 0.0) -> float:
        """When this process's execution time in the window (measured, plus the estimates of the
        requests in flight and `extra_ms`) drops under the budget."""
        if self._budget_ms is None:
            return now
        self._forget(now)
        # As the service does: a request is admitted while the window holds less than the budget
        # (its own time is charged when it ends), counting the requests still in flight.
        allowed = self._budget_ms * self._budget_factor - self._in_flight_ms - extra_ms
        total = self._spent_ms
        if total < allowed:
            return now
        for at, cost in self._spent:
            total -= cost
            if total < allowed:
                return at + self._window
        return now
