"""Dataverse's service protection, as the simulator enforces it: per web server, with an affinity
cookie, a Retry-After that lengthens for a client that keeps sending, the daily entitlement counted
per record, and limits at Dataverse's proportions when a run is shortened.

What Microsoft documents, and where each behaviour below is modelled:

- Microsoft Learn, "Service protection API limits"
  (https://learn.microsoft.com/power-apps/developer/data-platform/api-limits):
  the limits are evaluated *per user per web server* over a 5-minute sliding window (6000 requests,
  1,200 s of combined execution time, 52 concurrent); a refused request gets 429 and `Retry-After`,
  and a client that keeps sending requests while it is limited sees that duration grow. Under "How
  to maximize throughput", "Remove the affinity cookie": by default requests carry an affinity
  cookie that sends them all to one web server; since the limits are per web server, clients that
  need throughput should drop it so requests spread over the servers. → `Protection.route` (the
  `ARRAffinity` cookie picks the server; without one the load balancer picks in turn and answers
  with a `Set-Cookie`), one `WebServer` budget each, `WebServer.admit`'s `Retry-After` growth.
- Microsoft Learn, "Requests limits and allocations"
  (https://learn.microsoft.com/power-platform/admin/api-request-limits-allocations) and
  "Use bulk operation messages" (https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations):
  the daily entitlement counts Dataverse CRUD operations over 24 hours, and a bulk message counts
  as one request for service protection but every record in it counts toward the entitlement.
  → `Protection.entitlement` (reported, not enforced: the entitlement is not a 429).
- "Real proportions" (DESIGN §11): `proportional` shortens time, not budgets alone — the window,
  both window limits and the per-request and per-record costs shrink by the same factor, so one
  call is the same fraction of a window as in Dataverse.

Microsoft publishes neither how much `Retry-After` grows nor how servers are picked: the simulator
lengthens the pause by `retry_after_growth_seconds` for every request that arrives during it, and
the load balancer picks servers in turn; each request sent during a pause is told `growth` ×
the requests sent early so far more than the pause has left, never more than one window.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devstack.simulator.state import Limits

AFFINITY_COOKIE = "ARRAffinity"
REQUESTS_CODE = "0x80072322"
EXECUTION_CODE = "0x80072321"
CONCURRENT_CODE = "0x80072326"


@dataclass(frozen=True)
class Throttled:
    """A request refused by the service-protection limits: Dataverse's error code, its message and
    the Retry-After in seconds."""

    code: str
    message: str
    retry_after: float


@dataclass
class WebServer:
    """One web server's budget for the one application user: its sliding windows, requests in
    flight, and the pause a 429 started."""

    requests: collections.deque[float] = field(default_factory=collections.deque)
    executed: collections.deque[tuple[float, float]] = field(default_factory=collections.deque)
    executed_ms: float = 0.0
    inflight: int = 0
    max_inflight: int = 0
    paused_until: float = 0.0
    early: int = 0  # requests that arrived during the pause (each is told a longer wait)
    last: Throttled = Throttled(REQUESTS_CODE, "", 0.0)  # the refusal that started the pause

    def admit(self, limits: Limits, moment: float) -> Throttled | None:
        """None when admitted (then `release` must follow), else why it is refused."""
        if limits.max_concurrent and self.inflight >= limits.max_concurrent:
            return Throttled(
                CONCURRENT_CODE,
                f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}.",
                limits.concurrent_retry_after,
            )
        horizon = moment - limits.window_seconds
        while self.requests and self.requests[0] <= horizon:
            self.requests.popleft()
        while self.executed and self.executed[0][0] <= horizon:
            self.executed_ms -= self.executed.popleft()[1]
        refused = self._refusal(limits, moment)
        growth = limits.retry_after_growth_seconds
        if growth and moment < self.paused_until:
            # Sent during the pause a 429 announced: api-limits.md says the wait then grows. The
            # sender is told a longer wait, up to one window; the pause itself keeps its end, so a
            # client that waited what it was told is never refused for another's impatience (with
            # several instances, a pause that grew for everyone held them all off an empty window).
            self.early += 1
            last = refused or self.last
            wait = min(self.paused_until - moment + growth * self.early, limits.window_seconds)
            return Throttled(last.code, last.message, wait)
        if refused is not None:
            if growth:
                self.last = refused
                self.paused_until = moment + refused.retry_after
                self.early = 0
            return refused
        self.early = 0
        self.requests.append(moment)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        return None

    def _refusal(self, limits: Limits, moment: float) -> Throttled | None:
        if limits.max_requests and len(self.requests) >= limits.max_requests:
            return Throttled(
                REQUESTS_CODE,
                f"Number of requests exceeded the limit of {limits.max_requests} over time "
                f"window of {limits.window_seconds:g} seconds.",
                self.requests[0] + limits.window_seconds - moment,
            )
        if limits.max_execution_ms and self.executed_ms >= limits.max_execution_ms:
            return Throttled(
                EXECUTION_CODE,
                f"Combined execution time of incoming requests exceeded limit of "
                f"{limits.max_execution_ms:,.0f} milliseconds over time window of "
                f"{limits.window_seconds:g} seconds. Decrease number of concurrent requests or "
                "reduce the duration of requests and try again later.",
                self._execution_room(limits, moment) - moment,
            )
        return None

    def _execution_room(self, limits: Limits, moment: float) -> float:
        """When enough execution time leaves the window for the total to drop below the limit."""
        total = self.executed_ms
        for at, cost in self.executed:
            total -= cost
            if total < limits.max_execution_ms:
                return at + limits.window_seconds
        return moment

    def release(self, cost_ms: float, moment: float) -> None:
        """An admitted request ended: its execution time is charged to the window now."""
        self.inflight -= 1
        if cost_ms:
            self.executed.append((moment, cost_ms))
            self.executed_ms += cost_ms


class Protection:
    """The web servers behind one org URL, each with its own budget for the application user,
    and the entitlement count. Not thread-safe: the `Simulator` calls it under its lock."""

    def __init__(self, servers: int = 1) -> None:
        self.servers = [WebServer() for _ in range(max(1, servers))]
        self._cookies = {_cookie_value(i): i for i in range(len(self.servers))}
        self._turn = 0
        self.entitlement = 0  # Power Platform requests: one per record a request wrote, else one
        self.refused: collections.Counter[str] = collections.Counter()  # 429s by Dataverse error code
        self.executed_total_ms = 0.0

    def route(self, cookie_header: str | None) -> tuple[int, str | None]:
        """The web server a request goes to, and the `Set-Cookie` to answer with (None when the
        request already named its server, or when there is only one)."""
        named = _affinity(cookie_header)
        if named is not None and named in self._cookies:
            return self._cookies[named], None
        index = self._turn % len(self.servers)
        self._turn += 1
        if len(self.servers) == 1:
            return index, None
        return index, f"{AFFINITY_COOKIE}={_cookie_value(index)}; Path=/; HttpOnly; Secure"

    def admit(self, limits: Limits, server: int, moment: float) -> Throttled | None:
        refused = self.servers[server].admit(limits, moment)
        if refused is not None:
            self.refused[refused.code] += 1
        return refused

    def release(self, limits: Limits, server: int, records: int, moment: float) -> None:
        cost = limits.cost_ms(records)
        self.servers[server].release(cost, moment)
        self.executed_total_ms += cost
        self.entitlement += max(1, records)

    @property
    def max_inflight(self) -> int:
        return max(server.max_inflight for server in self.servers)

    def per_server(self) -> list[dict[str, float]]:
        """Each server's current window: requests and execution ms."""
        return [
            {"requests_in_window": len(s.requests), "execution_ms_in_window": round(s.executed_ms, 1)}
            for s in self.servers
        ]


def _cookie_value(index: int) -> str:
    return hashlib.sha256(f"web-server-{index}".encode()).hexdigest()


def _affinity(header: str | None) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(AFFINITY_COOKIE)
    return None if morsel is None else morsel.value
