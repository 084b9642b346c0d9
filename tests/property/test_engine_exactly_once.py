"""Property: generated messages of both shapes (single-lead and bulk, overlapping domains,
duplicates) against generated Dataverse faults (429, 5xx, 401, 403, 400, answers lost after the
commit, a worker dying mid-call) and starting states (leads already there, stored ids deleted),
with and without the alternate key, with Dataverse calls taking up to half a claim's lease — the
host loop drains the queue, and then every domain has at
most one lead; a domain without a lead is in the poison queue with state `error`; a synced row
names the one lead; no row is left claimed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.dataverse import D365APIError, D365AuthenticationError, D365RateLimitError, D365ResponseLostError
from shared.engine import process_message
from shared.models import LeadBatch, LeadPush
from tests.unit.fakes import Crash, run_host, world

DOMAINS = [f"p{i}.example" for i in range(5)]
METHODS = [
    "read_lead",
    "find_lead",
    "create_lead",
    "create_lead_if_absent",
    "get_lead_by_key",
    "read_leads",
    "find_many",
    "create_many",
]


def fault(kind: str) -> Exception:
    if kind == "429":
        return D365RateLimitError("Number of requests exceeded the limit", 3.0, code="0x80072322")
    if kind == "503":
        return D365APIError("Service unavailable", 503, "0x0", transient=True)
    if kind == "401":
        return D365AuthenticationError("authentication failed", 401, "")
    status = int(kind)
    return D365APIError("refused", status, "0x80040220" if status == 403 else "0x80044331")


KINDS = st.sampled_from(["429", "503", "401", "403", "400"])
MESSAGES = st.lists(
    st.one_of(
        st.tuples(st.just(1), st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=1)),
        st.tuples(st.just(2), st.lists(st.sampled_from(DOMAINS), min_size=1, max_size=5)),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=MESSAGES,
    faults=st.dictionaries(st.sampled_from(METHODS), st.lists(KINDS, max_size=3), max_size=4),
    after_commit=st.lists(st.sampled_from(["lost", "crash"]), max_size=2),
    existing=st.sets(st.sampled_from(DOMAINS), max_size=2),
    deleted=st.sets(st.sampled_from(DOMAINS), max_size=2),
    domain_key=st.booleans(),
    latency=st.integers(min_value=0, max_value=9),
    concurrent=st.booleans(),
)
def test_every_domain_ends_with_one_lead_or_in_poison(
    messages: list[tuple[int, list[str]]],
    faults: dict[str, list[str]],
    after_commit: list[str],
    existing: set[str],
    deleted: set[str],
    domain_key: bool,
    latency: int,
    concurrent: bool,
) -> None:
    w = world(
        HUNTER_D365_DOMAIN_KEY=str(domain_key).lower(),
        HUNTER_D365_MAX_THROTTLED_SECONDS="30",
        HUNTER_D365_CLAIM_LEASE_SECONDS="20",
    )

    busy = [False]

    def slow(method: str) -> None:
        # Each Dataverse call takes `latency` seconds (under half the lease, as the design
        # requires): a long split then outlasts its first lease and must renew its claims. With
        # `concurrent`, a second worker takes the next message meanwhile.
        w.clock.advance(latency)
        ready = w.queues.push.visible()
        if not concurrent or busy[0] or not ready:
            return
        message = ready[0]
        message.dequeue_count += 1
        message.visible_at = w.clock() + timedelta(days=1)
        busy[0] = True
        try:
            process_message(str(message.content).encode(), w.services, lambda: 0.0, message.dequeue_count)
        except (Exception, Crash):
            message.visible_at = w.clock() + timedelta(seconds=30)  # that worker died or failed
        else:
            w.queues.push.delete_message(message)
        finally:
            busy[0] = False

    w.dataverse.on_call = slow
    for domain in existing:
        w.dataverse.add(hnt_domain=domain)
    for domain in deleted - existing:
        w.table.create_entity(
            {
                "PartitionKey": domain,
                "RowKey": "lead",
                "status": "synced",
                "d365_lead_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
                "attempts": 1,
            }
        )
    for method, kinds in faults.items():
        w.dataverse.fail[method] = list(map(fault, kinds))
    w.dataverse.after_commit = [
        D365ResponseLostError("the connection was lost", "connection_dropped") if kind == "lost" else Crash()
        for kind in after_commit
    ]
    sent: set[str] = set()
    for shape, domains in messages:
        sent.update(domains)
        pushes = tuple(LeadPush(domain=d) for d in domains)
        body = pushes[0].to_json() if shape == 1 else LeadBatch(pushes).to_json()
        w.queues.push.send_message(body)
    run_host(w, max_deliveries=500)

    poisoned: dict[str, int] = {}
    for text in w.queues.poison.texts():
        data: dict[str, Any] = json.loads(text)
        for lead in data.get("leads", [data]):
            poisoned[lead["domain"]] = poisoned.get(lead["domain"], 0) + 1
    for domain in sent:
        leads = [i for i, record in w.dataverse.leads.items() if record.get("hnt_domain") == domain]
        assert len(leads) <= 1, f"{domain}: {len(leads)} leads"
        row = w.state(domain)
        assert row is not None and not row.get("claim_token"), f"{domain}: left claimed"
        if leads:
            if row["status"] == "synced":
                assert row["d365_lead_id"] == leads[0]
        else:
            assert poisoned.get(domain, 0) >= 1 and row["status"] == "error", f"{domain}: neither lead nor poison"
