"""After `connect` on an empty org, the app pushes through the alternate key it created: one
create-only upsert per new lead, and a second push of the same domain is adopted, never duplicated."""

from __future__ import annotations

import io
from collections.abc import Callable

from devstack.simulator import Simulator
from devstack.simulator.org import ADMIN_OID
from shared.connect import main
from tests.e2e.conftest import Stack
from tests.integration.test_connect import person

LEAD = {"domain": "connected-e2e.com", "company_name": "Connected GmbH", "segment": "smb", "final_score": 71.0}


def test_connect_then_push_with_the_key_in_force(sim: Simulator, start_stack: Callable[..., Stack]) -> None:
    sim.org.make_empty()
    sim.org.key_delays = (0.2, 0.2)
    out = io.StringIO()
    args = ["--org", sim.base_url, "--application-id", sim.client_id, "--poll-seconds", "0.05"]
    assert main([*args, "--settings", "/nonexistent", "--no-smoke"], token=person(sim, ADMIN_OID), out=out) == 0, out
    stack = start_stack(HUNTER_D365_DOMAIN_KEY="true")
    assert stack.push(LEAD).status_code == 202
    state = stack.wait_status("connected-e2e.com", "synced")
    assert state["last_outcome"] == "created"
    assert stack.push({**LEAD, "force": True}).status_code == 202
    stack.wait_for(lambda: stack.events("d365_lead_already_exists"), what="the re-push adopted")
    [lead] = stack.admin.leads()
    assert (lead["leadid"], lead["hnt_domain"], lead["hnt_segment"]) == (
        state["d365_lead_id"],
        "connected-e2e.com",
        "smb",
    )
    upserts = [r["status"] for r in stack.admin.requests() if r["route"] == "lead_upsert"]
    assert upserts[0] == 201  # created through the key connect made, in one request
