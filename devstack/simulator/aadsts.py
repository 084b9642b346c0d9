"""Entra ID's error body for a refused token request: `error`, an `AADSTS<n>:` description with
trace and correlation ids and a timestamp, `error_codes`, as the v2.0 token endpoint sends it.

Both token endpoints use it: client credentials (`entra.py`) and the browser grants (`signin.py`).
It lives apart from both because `entra` hands the browser grants to `signin`: with the error in
`entra`, `signin` had to import `entra` back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from devstack.simulator.wire import Request, Response, json_response

if TYPE_CHECKING:
    from devstack.simulator.state import SimulatorState


def error_response(
    sim: SimulatorState, request: Request, status: int, error: str, aadsts: int, description: str
) -> Response:
    """The token endpoint's refusal: `status` with `error` and AADSTS code `aadsts`."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace = str(uuid.uuid4())
    correlation = request.header("client-request-id") or str(uuid.uuid4())
    return json_response(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace} Correlation ID: "
            f"{correlation} Timestamp: {stamp}",
            "error_codes": [aadsts],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{sim.base_url}/error?code={aadsts}",
        },
    )
