"""Property (issue 14's "done when"): a generated hostile queue message — the hostile leads of
`test_hostile_leads.py`, in the message envelope — meeting generated Dataverse faults (transient,
429, permanent, refused credentials, a bug) ends, on the in-memory host loop, as exactly one of:

- a correct lead: state `synced`, exactly one lead in Dynamics for its domain;
- exactly one poison message: with state `error` when the message named a domain, with no state
  and no Dataverse call when it could not be read at all.

Never a loop (the host loop fails after 200 deliveries), never a second lead."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.dataverse import D365APIError, D365AuthenticationError, D365RateLimitError
from shared.models import InputError, decode_message
from tests.property.test_hostile_leads import hostile_leads, to_json_text
from tests.unit.fakes import Boom, run_host, world

FAULTS = {
    "transient": lambda: D365APIError("unavailable", 503, "0x0", transient=True),
    "throttled": lambda: D365RateLimitError("slow down", 5),
    "permanent": lambda: D365APIError("bad field", 400, "0x80048d19"),
    "auth": lambda: D365AuthenticationError("authentication failed: refused", 401, "invalid_client"),
    "bug": lambda: Boom("unexpected"),
}
FAULT_PLANS = st.lists(
    st.tuples(
        st.sampled_from(["read_lead", "find_lead", "create_lead", "create_lead_if_absent", "get_lead_by_key"]),
        st.sampled_from(sorted(FAULTS)),
        st.integers(1, 6),
    ),
    max_size=3,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_leads(), FAULT_PLANS, st.booleans())
@example({"domain": "nan-score.example", "final_score": float("nan")}, [], False)
@example({"domain": "bug-everywhere.example"}, [("find_lead", "bug", 6), ("create_lead", "bug", 6)], False)
@example({"domain": "keyed.example"}, [("create_lead_if_absent", "transient", 2)], True)
def test_every_hostile_message_ends_as_a_lead_or_one_poison_message(
    data: dict[str, Any], plan: list[tuple[str, str, int]], domain_key: bool
) -> None:
    w = world(HUNTER_D365_DOMAIN_KEY="true" if domain_key else "false")
    for method, kind, times in plan:
        w.dataverse.fail.setdefault(method, []).extend(FAULTS[kind] for _ in range(times))
    text = to_json_text({"schema_version": 1, **data})
    w.queues.push.send_message(text)
    run_host(w)  # raises on a loop
    poison = w.queues.poison.texts()
    try:
        lead = decode_message(text.encode("utf-8"))
    except InputError:
        assert len(poison) == 1 and not w.dataverse.calls and not w.table.rows
        return
    row = w.state(lead.domain)
    assert row is not None
    leads = [r for r in w.dataverse.leads.values() if r.get("hnt_domain") == lead.domain]
    if row["status"] == "synced":
        assert not poison and len(leads) == 1 and leads[0]["leadid"] == row["d365_lead_id"]
    else:
        assert row["status"] == "error" and len(poison) == 1 and len(leads) <= 1, row
        assert json.loads(poison[0])["domain"] == lead.domain
    assert not row.get("claim_token")
