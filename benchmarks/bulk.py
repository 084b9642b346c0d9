"""Benchmark sections for issue 15, all against the same simulated service-protection limits:
Dataverse's documented limits (6000 requests and 1200 s of execution time per 300 s, 52 concurrent)
with both window limits scaled together by `--limit-scale` and the window shortened to
`--limit-window` (`devstack.simulator.state.Limits.documented`), and every request taking the
execution time it is charged (90.9 ms + 9.1 ms per record written, from Microsoft's BulkOperations
sample timings). The default window (60 s) makes one 100-record `CreateMultiple` 4.2 % of a window's
execution budget (DESIGN §11: "a few percent, never 25 %"); the former 10 s window made it 25 %.

    single   single-lead messages (version 1, what push-lead sends) → the worker → one
             create-only upsert each: leads/s, fraction of the request ceiling, share of 429s
    bulk     push-leads (1000 leads per request) → bulk messages of 100 → one lookup and one
             CreateMultiple each: leads/s, fraction of the execution-time ceiling, Dataverse
             requests per lead, intake leads/s, p50/p95 enqueued → synced
    peer     Microsoft's Dataverse SDK from a plain script: `records.create("lead", chunk)` in
             chunks of 100, sleeping Retry-After on a 429, no queue and no exactly-once

The single and bulk runs also carry the reliability suite's faults (429s, 5xx, a lookup 503,
responses dropped after the commit) and count lost and duplicate leads.

Fractions of a ceiling are given twice: against the rate (`limit / window` × the run's length, as
the throughput section does), and `_strict`, against all a sliding window that starts empty can
admit in a run of T seconds, `limit × (1 + T / window)` (a full window's worth at once, then `limit`
per `window`), so a short run cannot look better than the limits allow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.processes import ProcessGroup, api_token
from devstack.simulator import SimulatorAdmin
from devstack.simulator.directory import OPERATOR_CLIENT_ID, OPERATOR_SECRET
from devstack.simulator.state import Limits

FAULTS = 3  # of each kind, as in the reliability suite


def limits(args: argparse.Namespace) -> Limits:
    return Limits.documented(args.limit_scale, args.limit_window)


def apply_limits(admin: SimulatorAdmin, args: argparse.Namespace) -> Limits:
    admin.reset()
    chosen = limits(args)
    admin.set_limits(**chosen.__dict__)
    return chosen


def model(args: argparse.Namespace) -> dict[str, Any]:
    """The simulator's cost model and limits for this run, beside the figures."""
    chosen = limits(args)
    return {
        "documented_limits": "6000 requests, 1,200,000 ms execution time per 300 s, 52 concurrent (api-limits.md)",
        "scale": args.limit_scale,
        "window_s": chosen.window_seconds,
        "max_requests_per_window": chosen.max_requests,
        "max_execution_ms_per_window": round(chosen.max_execution_ms, 1),
        "request_ceiling_per_s": round(chosen.max_requests / chosen.window_seconds, 3),
        "execution_ceiling_ms_per_s": round(chosen.max_execution_ms / chosen.window_seconds, 1),
        "request_cost_ms": round(chosen.request_cost_ms, 1),
        "record_cost_ms": round(chosen.record_cost_ms, 2),
        "cost_source": "PowerApps-Samples BulkOperations: 100 creates one by one ≈ 10 s, one CreateMultiple of 100 ≈ 1 s",
        "create_multiple_100_share_of_window": round(chosen.cost_ms(100) / chosen.max_execution_ms, 4),
        "max_concurrent": chosen.max_concurrent,
    }


def host_env(app_env: Any, connection: str, info: dict[str, Any], prefix: str, **extra: str) -> dict[str, str]:
    return dict(
        app_env(
            connection,
            info,
            HUNTER_D365_DOMAIN_KEY="true",
            HUNTER_D365_QUEUE=f"{prefix}-push",
            HUNTER_D365_RESULTS_QUEUE=f"{prefix}-results",
            HUNTER_D365_STATE_TABLE=f"{prefix}state",
            HUNTER_D365_RETRY_BASE_SECONDS="0.5",
            HUNTER_D365_RETRY_CAP_SECONDS="10",
            HUNTER_D365_RETRY_JITTER_SECONDS="0.5",
            HUNTER_D365_MAX_ATTEMPTS="30",
            HUNTER_D365_CLAIM_RETRY_SECONDS="0.5",
            LOG_LEVEL="WARNING",
            AzureFunctionsJobHost__extensions__queues__maxPollingInterval="00:00:00.200",
            **extra,
        )
    )


def inject_faults(admin: SimulatorAdmin, write_route: str) -> None:
    # On the Dataverse write route, not "*" (which would also hit Entra ID's discovery document).
    admin.add_fault(write_route, status=429, retry_after=1, times=FAULTS)
    admin.add_fault(write_route, status=500, times=FAULTS)
    admin.add_fault("lead_query", status=503, times=FAULTS)
    admin.add_fault(write_route, drop_after_commit=True, times=FAULTS)


def queue(connection: str, name: str) -> QueueClient:
    client = QueueClient.from_connection_string(
        connection,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        api_version="2021-12-02",
    )
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def collect(connection: str, name: str, domains: list[str], timeout: float, label: str) -> list[dict[str, Any]]:
    """The last outcome per domain from results queue `name`, until every domain has a synced one."""
    results = queue(connection, name)
    wanted = set(domains)
    latest: dict[str, dict[str, Any]] = {}
    synced: set[str] = set()
    started = time.time()
    deadline = started + timeout
    last_report = started
    while len(synced) < len(wanted) and time.time() < deadline:
        batch = list(results.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=300))
        for message in batch:
            outcome = json.loads(message.content)
            if outcome["domain"] in wanted:
                latest[outcome["domain"]] = outcome
                if outcome["status"] == "synced":
                    synced.add(outcome["domain"])
            results.delete_message(message)
        if not batch:
            time.sleep(0.3)
        if time.time() - last_report > 10:
            print(f"  {label}: synced {len(synced)}/{len(wanted)} after {time.time() - started:.0f} s", flush=True)
            last_report = time.time()
    return list(latest.values())


def integrity(admin: SimulatorAdmin, domains: list[str]) -> dict[str, int]:
    present = [lead["hnt_domain"] for lead in admin.leads() if lead.get("hnt_domain") in set(domains)]
    return {"lost": len(set(domains) - set(present)), "duplicates": len(present) - len(set(present))}


def single_path(
    group: ProcessGroup,
    connection: str,
    info: dict[str, Any],
    admin: SimulatorAdmin,
    args: argparse.Namespace,
    env: Any,
) -> dict[str, Any]:
    """Single-lead messages at the request ceiling: one create-only upsert per lead."""
    from benchmarks.run import counts, parse, percentile

    chosen = apply_limits(admin, args)
    inject_faults(admin, "lead_upsert")
    url, _ = group.host(host_env(env, connection, info, "single"), name="single-host")
    del url
    run_id = int(time.time())
    domains = [f"single-{run_id}-{i}.example" for i in range(args.single_leads)]
    push = queue(connection, "single-push")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i, domain in enumerate(domains):
        push.send_message(
            json.dumps({"schema_version": 1, "domain": domain, "correlation_id": f"s{run_id}-{i}", "enqueued_at": now})
        )
    outcomes = collect(connection, "single-results", domains, args.timeout, "single")
    synced = [o for o in outcomes if o["status"] == "synced"]
    first = min(parse(o["enqueued_at"]) for o in synced)
    last = max(parse(o["at"]) for o in synced)
    elapsed = last - first
    dataverse, _, limited = counts(admin)
    writes = sum(admin.routes().get("lead_upsert", {}).values())
    admitted = dataverse - limited  # a refused request does not count against the window
    ceiling_requests = chosen.max_requests * (1 + elapsed / chosen.window_seconds)
    latencies = [parse(o["at"]) - parse(o["enqueued_at"]) for o in synced]
    return {
        "leads": len(domains),
        "synced": len(synced),
        "leads_per_s": round(len(synced) / elapsed, 3),
        "elapsed_s": round(elapsed, 1),
        "dataverse_requests": dataverse,
        "http_429_received": limited,
        "share_of_requests_answered_429": round(limited / max(1, dataverse), 4),
        "share_of_requests_answered_429_excluding_injected": round(max(0, limited - FAULTS) / max(1, dataverse), 4),
        "fraction_of_request_ceiling": round(admitted / elapsed / (chosen.max_requests / chosen.window_seconds), 3),
        "fraction_of_request_ceiling_strict": round(admitted / ceiling_requests, 3),
        "writes": writes,
        "p95_enqueued_to_synced_s": round(percentile(latencies, 0.95), 2),
        **integrity(admin, domains),
    }


def bulk_path(
    group: ProcessGroup,
    connection: str,
    info: dict[str, Any],
    admin: SimulatorAdmin,
    args: argparse.Namespace,
    env: Any,
) -> dict[str, Any]:
    """push-leads → bulk messages → one lookup and one CreateMultiple each."""
    from benchmarks.run import counts, parse, percentile

    chosen = apply_limits(admin, args)
    inject_faults(admin, "lead_create_multiple")
    settings = host_env(env, connection, info, "bulk", HUNTER_D365_BULK_SIZE=str(args.bulk_size))
    url, _ = group.host(settings, name="bulk-host")
    # A fresh bearer token of the operator app (role Leads.Push), as Hunter's backend sends one; the
    # one minted for an earlier section may not outlive the simulator's reset above.
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {api_token(info, OPERATOR_CLIENT_ID, OPERATOR_SECRET, info['ca_bundle'])}"
    run_id = int(time.time())
    domains = [f"bulk-{run_id}-{i}.example" for i in range(args.bulk_leads)]
    intake_s = 0.0
    for offset in range(0, len(domains), 1000):
        chunk = [{"domain": d, "company_name": f"Bench {d}"} for d in domains[offset : offset + 1000]]
        t0 = time.perf_counter()
        response = http.post(f"{url}/api/v1/d365/push-leads", json={"leads": chunk}, timeout=300)
        intake_s += time.perf_counter() - t0
        assert response.status_code == 202, (response.status_code, response.text[:500])
        assert response.json()["accepted"] == len(chunk), response.text[:500]
    print(f"  bulk intake: {len(domains)} leads in {intake_s:.2f} s", flush=True)
    outcomes = collect(connection, "bulk-results", domains, args.timeout, "bulk")
    synced = [o for o in outcomes if o["status"] == "synced"]
    first = min(parse(o["enqueued_at"]) for o in synced)
    last = max(parse(o["at"]) for o in synced)
    elapsed = last - first
    dataverse, _, limited = counts(admin)
    counters = admin.counters()
    routes = admin.routes()
    ceiling_ms = chosen.max_execution_ms * (1 + elapsed / chosen.window_seconds)
    latencies = [parse(o["at"]) - parse(o["enqueued_at"]) for o in synced]
    return {
        "leads": len(domains),
        "leads_per_message": args.bulk_size,
        "synced": len(synced),
        "leads_per_s": round(len(synced) / elapsed, 2),
        "elapsed_s": round(elapsed, 1),
        "execution_ms_charged": counters["execution_ms"],
        "fraction_of_execution_ceiling": round(
            counters["execution_ms"] / elapsed / (chosen.max_execution_ms / chosen.window_seconds), 3
        ),
        "fraction_of_execution_ceiling_strict": round(counters["execution_ms"] / ceiling_ms, 3),
        "dataverse_requests": dataverse,
        "dataverse_requests_per_lead": round(dataverse / len(domains), 4),
        "create_multiple_calls": sum(routes.get("lead_create_multiple", {}).values()),
        "lookups": sum(routes.get("lead_query", {}).values()),
        "http_429_received": limited,
        "intake_leads_per_s": round(len(domains) / intake_s, 1),
        "p50_enqueued_to_synced_s": round(percentile(latencies, 0.5), 2),
        "p95_enqueued_to_synced_s": round(percentile(latencies, 0.95), 2),
        **integrity(admin, domains),
    }


def sdk_peer(info: dict[str, Any], admin: SimulatorAdmin, args: argparse.Namespace) -> dict[str, Any]:
    """Microsoft's SDK straight from a script: chunks of `--bulk-size`, Retry-After on a 429."""
    import os

    from azure.identity import ManagedIdentityCredential
    from PowerPlatform.Dataverse.client import DataverseClient
    from PowerPlatform.Dataverse.core.errors import HttpError

    chosen = apply_limits(admin, args)
    os.environ["IDENTITY_ENDPOINT"] = info["identity_endpoint"]
    os.environ["IDENTITY_HEADER"] = "local-identity-header"
    os.environ["REQUESTS_CA_BUNDLE"] = info["ca_bundle"]
    run_id = int(time.time())
    domains = [f"sdk-{run_id}-{i}.example" for i in range(args.bulk_leads)]
    limited = 0
    with DataverseClient(info["dataverse_url"], ManagedIdentityCredential()) as client:
        client.records.create("lead", [{"subject": "warm-up", "hnt_domain": f"sdk-{run_id}-warm.example"}])
        apply_limits(admin, args)  # the warm-up (token, metadata) does not count
        started = time.perf_counter()
        for offset in range(0, len(domains), args.bulk_size):
            chunk = [
                {"subject": f"Hunter: {d}", "lastname": d, "companyname": d, "hnt_domain": d, "leadsourcecode": 8}
                for d in domains[offset : offset + args.bulk_size]
            ]
            while True:
                try:
                    client.records.create("lead", chunk)
                    break
                except HttpError as exc:
                    if exc.status_code != 429:
                        raise
                    limited += 1
                    time.sleep(float(exc.details.get("retry_after") or 1))
        elapsed = time.perf_counter() - started
    counters = admin.counters()
    ceiling_ms = chosen.max_execution_ms * (1 + elapsed / chosen.window_seconds)
    return {
        "leads": len(domains),
        "chunk": args.bulk_size,
        "leads_per_s": round(len(domains) / elapsed, 2),
        "elapsed_s": round(elapsed, 1),
        "execution_ms_charged": counters["execution_ms"],
        "fraction_of_execution_ceiling": round(
            counters["execution_ms"] / elapsed / (chosen.max_execution_ms / chosen.window_seconds), 3
        ),
        "fraction_of_execution_ceiling_strict": round(counters["execution_ms"] / ceiling_ms, 3),
        "http_429_received": limited,
        **integrity(admin, domains),
    }


def comparison(figures: dict[str, Any]) -> dict[str, Any]:
    """The issue's ratios, from the sections that ran."""
    single = figures.get("single path at the request ceiling")
    bulk = figures.get("bulk path at the execution-time ceiling")
    peer = figures.get("peer: Microsoft's Dataverse SDK from a script")
    out: dict[str, Any] = {}
    if single and bulk:
        out["bulk_leads_per_s_over_single"] = round(bulk["leads_per_s"] / single["leads_per_s"], 1)
    if bulk:
        out["intake_leads_per_s_over_bulk"] = round(bulk["intake_leads_per_s"] / bulk["leads_per_s"], 1)
    if bulk and peer:
        out["ours_over_sdk_leads_per_s"] = round(bulk["leads_per_s"] / peer["leads_per_s"], 2)
    return out
