"""Service-protection limits at Dataverse's proportions for a shortened run (`proportional`): the
window, the budgets and the per-call costs scale together, so one call is the same fraction of a
window as in Dataverse (the model itself is in `protection.py`; its limits type in `state.py`)."""

from __future__ import annotations

from devstack.simulator.state import (
    DOCUMENTED_MAX_CONCURRENT,
    DOCUMENTED_MAX_EXECUTION_MS,
    DOCUMENTED_MAX_REQUESTS,
    DOCUMENTED_WINDOW_SECONDS,
    RECORD_COST_MS,
    REQUEST_COST_MS,
    Limits,
)


def proportional(
    rate_scale: float = 1.0,
    time_scale: float = 1.0,
    granularity: float | None = None,
    web_servers: int = 1,
) -> Limits:
    """Dataverse's limits at its own proportions, run `1 / time_scale` times faster and at
    `rate_scale` of its rates: the window is 300 s × `time_scale`; both window limits are the
    documented ones × `rate_scale` × `time_scale`; and the costs (90.9 ms per request, 9.1 ms per
    record) × `rate_scale` × `time_scale` too, so one call is the same fraction of a window as in
    Dataverse (a 100-record `CreateMultiple` ≈ 0.083 % of the execution budget) and each limit binds
    where it binds in Dataverse. `granularity`, when given, instead sizes the costs so that such a
    call is that fraction of the window's execution budget (a two-core machine cannot run a window
    that holds 1200 of them; DESIGN §11 asks for "a few percent, never 25 %"). Requests take their
    execution time, 52 run at once per server, and `Retry-After` grows by 1 % of the window for
    each request sent during the pause.
    """
    factor = rate_scale * time_scale
    budget_ms = DOCUMENTED_MAX_EXECUTION_MS * factor
    cost_factor = factor
    if granularity is not None:
        cost_factor = granularity * budget_ms / (REQUEST_COST_MS + 100 * RECORD_COST_MS)
    window = DOCUMENTED_WINDOW_SECONDS * time_scale
    return Limits(
        max_requests=max(1, round(DOCUMENTED_MAX_REQUESTS * factor)),
        window_seconds=window,
        max_concurrent=DOCUMENTED_MAX_CONCURRENT,
        max_execution_ms=budget_ms,
        request_cost_ms=REQUEST_COST_MS * cost_factor,
        record_cost_ms=RECORD_COST_MS * cost_factor,
        execute=True,
        web_servers=web_servers,
        retry_after_growth_seconds=window / 100,
    )
