"""The deployed shape (issue 20): N local host processes — the instances — on one queue, one table
and one simulator, with the settings Bicep deploys, pushing a backlog through each path with the
reliability suite's faults.

    python -m benchmarks.run --only scale [--scale-instances 4,8] [--scale-leads 5000] [--quick]

Per instance, what `infra/app/api.bicep` sets: `HUNTER_D365_MAX_INSTANCES` = N (maximumInstanceCount),
`HUNTER_D365_CONCURRENCY_BUDGET` 44 and the queue trigger's batchSize = min(44 // N, 32) with
newBatchThreshold 0, `PYTHON_THREADPOOL_THREAD_COUNT` 16, `HUNTER_D365_RATE_BUDGET_PERCENT` 95 (each
instance paces on 95 % ÷ N of every limit), `HUNTER_D365_BULK_SIZE` 100 on the bulk path (1 on the
single path: one message per lead). Retry delays are the benchmarks' short ones (0.5 s base, not
Bicep's 60 s), so a retried message does not idle a run for a minute.

The limits (devstack/simulator/protection.py, `proportional`), one web server (every request of
the app reaches one server's budget, the worst case for a budget shared by N instances):

    single  Dataverse's real rates (20 requests/s, 4000 ms of execution per s) over a 30 s window,
            costs shrunk with the window (time × 0.1): every call the fraction of a window it is
            in Dataverse; the single path is bound by requests, as in Dataverse.
    bulk    a tenth of the rates (2 requests/s, 400 ms/s) over a 60 s window, costs sized so that
            one 100-record CreateMultiple is 5 % of the window's execution budget: at Dataverse's
            own 0.083 % one window would hold 1200 such calls (120,000 leads), a run this machine
            cannot make; 5 % is DESIGN §11's "a few percent, never 25 %".

Figures per run: leads/s; throughput ÷ the ceiling of one user (requests on the single path,
execution time on the bulk path), against the rate and `_strict` (all a sliding window that starts
empty admits in T s: limit × (1 + T / window)); the share of Dataverse requests answered 429 (with
and without the injected ones) and of those that were execution-time 429s; entitlement requests
per lead (every record of a bulk message counts); Storage round trips per lead, the app's (state
table, push/results/poison queues) and the queue trigger's (polling, deleting, renewing: the
Functions host's own in Azure), logged by each host when it stops; "Connection pool is full,
discarding connection" warnings in the hosts' logs; lost and duplicate leads.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from benchmarks.bulk import FAULTS, collect, host_env, inject_faults, integrity, queue
from devstack.processes import ProcessGroup, api_token
from devstack.simulator import SimulatorAdmin
from devstack.simulator.directory import OPERATOR_CLIENT_ID, OPERATOR_SECRET
from devstack.simulator.proportions import proportional
from devstack.simulator.state import Limits

CONCURRENCY_BUDGET = 44  # infra/main.bicep dataverseConcurrencyBudget
RATE_BUDGET_PERCENT = 95  # infra/main.bicep dataverseRateBudgetPercent
BULK_SIZE = 100  # infra/main.bicep bulkSize


def single_limits() -> Limits:
    return proportional(rate_scale=1.0, time_scale=0.1)


def bulk_limits() -> Limits:
    return proportional(rate_scale=0.1, time_scale=0.2, granularity=0.05)


def deployed_settings(instances: int, bulk: bool) -> dict[str, str]:
    """The app settings infra/app/api.bicep gives every instance when maximumInstanceCount = N."""
    per_instance = max(1, CONCURRENCY_BUDGET // instances)
    return {
        "HUNTER_D365_MAX_INSTANCES": str(instances),
        "HUNTER_D365_CONCURRENCY_BUDGET": str(CONCURRENCY_BUDGET),
        "HUNTER_D365_RATE_BUDGET_PERCENT": str(RATE_BUDGET_PERCENT),
        "HUNTER_D365_BULK_SIZE": str(BULK_SIZE if bulk else 1),
        "AzureFunctionsJobHost__extensions__queues__batchSize": str(min(per_instance, 32)),
        "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "0",
        "PYTHON_THREADPOOL_THREAD_COUNT": "16",
    }


def describe(limits: Limits) -> dict[str, Any]:
    return {
        "window_s": limits.window_seconds,
        "requests_per_window": limits.max_requests,
        "execution_ms_per_window": round(limits.max_execution_ms, 1),
        "request_cost_ms": round(limits.request_cost_ms, 2),
        "record_cost_ms": round(limits.record_cost_ms, 3),
        "create_multiple_100_share_of_window": round(limits.cost_ms(100) / limits.max_execution_ms, 5),
        "web_servers": limits.web_servers,
    }


def host_logs(state_dir: Path, names: list[str]) -> tuple[int, int, int]:
    """(the app's Storage round trips, the host's own, discarded pool connections) over the hosts'
    logs."""
    trips = host_trips = discarded = 0
    for name in names:
        for line in (state_dir / f"{name}.log").read_text(errors="replace").splitlines():
            if "discarding connection" in line:
                discarded += 1
            if '"host_stopped"' in line:
                stopped = json.loads(line)
                trips += int(stopped.get("storage_round_trips", 0))
                host_trips += int(stopped.get("host_storage_round_trips", 0))
    return trips, host_trips, discarded


def enqueue_single(connection: str, name: str, domains: list[str], run_id: int) -> None:
    push = queue(connection, name)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def send(item: tuple[int, str]) -> None:
        i, domain = item
        push.send_message(
            json.dumps({"schema_version": 1, "domain": domain, "correlation_id": f"x{run_id}-{i}", "enqueued_at": now})
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(send, enumerate(domains)))


def enqueue_bulk(url: str, info: dict[str, Any], domains: list[str]) -> None:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {api_token(info, OPERATOR_CLIENT_ID, OPERATOR_SECRET, info['ca_bundle'])}"
    for offset in range(0, len(domains), 1000):
        chunk = [{"domain": d, "company_name": f"Bench {d}"} for d in domains[offset : offset + 1000]]
        response = http.post(f"{url}/api/v1/d365/push-leads", json={"leads": chunk}, timeout=300)
        assert response.status_code == 202, (response.status_code, response.text[:500])


def run(
    group: ProcessGroup,
    connection: str,
    info: dict[str, Any],
    admin: SimulatorAdmin,
    args: argparse.Namespace,
    env: Any,
    instances: int,
    bulk: bool,
) -> dict[str, Any]:
    """One backlog through N instances on one path; the figures above."""
    from benchmarks.run import counts, parse

    path = "bulk" if bulk else "single"
    limits = bulk_limits() if bulk else single_limits()
    admin.reset()
    admin.set_limits(**limits.__dict__)
    inject_faults(admin, "lead_create_multiple" if bulk else "lead_upsert")
    prefix = f"scale{path}{instances}"
    settings = host_env(env, connection, info, prefix, **deployed_settings(instances, bulk))
    run_id = int(time.time())
    leads = args.scale_leads
    domains = [f"{prefix}-{run_id}-{i}.example" for i in range(leads)]
    print(f"  {path}, {instances} instances: {leads} leads…", flush=True)
    # The backlog first, through a host whose worker is off (push-leads on the bulk path), so that
    # intake does not compete with the instances for this machine's two cores.
    intake_url, intake = group.host({**settings, "AzureWebJobs.push_worker.Disabled": "true"}, name=f"{prefix}-intake")
    if bulk:
        enqueue_bulk(intake_url, info, domains)
    else:
        enqueue_single(connection, f"{prefix}-push", domains, run_id)
    intake.terminate()
    intake.wait(timeout=30)
    names = [f"{prefix}-host{i}" for i in range(instances)]
    with ThreadPoolExecutor(max_workers=instances) as pool:  # the instances start together
        hosts = list(pool.map(lambda name: group.host(dict(settings), name=name), names))
    outcomes = collect(connection, f"{prefix}-results", domains, args.timeout, f"{path}×{instances}")
    for _, process in hosts:
        process.terminate()
    for _, process in hosts:
        process.wait(timeout=30)
    synced = [o for o in outcomes if o["status"] == "synced"]
    # From the first lead synced (the instances started on a full queue) to the last.
    first = min(parse(o["at"]) for o in synced)
    last = max(parse(o["at"]) for o in synced)
    elapsed = max(0.001, last - first)
    dataverse, _, limited = counts(admin)
    counters = admin.counters()
    routes = admin.routes()
    admitted = dataverse - limited
    refused = counters.get("refused_by_code", {})
    trips, host_trips, discarded = host_logs(group.state_dir, [*names, f"{prefix}-intake"])
    request_rate = limits.max_requests / limits.window_seconds
    execution_rate = limits.max_execution_ms / limits.window_seconds
    strict = 1 + elapsed / limits.window_seconds
    figures: dict[str, Any] = {
        "instances": instances,
        "leads": leads,
        "synced": len(synced),
        "elapsed_s": round(elapsed, 1),
        "leads_per_s": round(len(synced) / elapsed, 2),
        "throughput_over_request_ceiling": round(admitted / elapsed / request_rate, 3),
        "throughput_over_request_ceiling_strict": round(admitted / (limits.max_requests * strict), 3),
        "execution_time_over_ceiling": round(counters["execution_ms"] / elapsed / execution_rate, 3),
        "execution_time_over_ceiling_strict": round(counters["execution_ms"] / (limits.max_execution_ms * strict), 3),
        "dataverse_requests": dataverse,
        "share_answered_429": round(limited / max(1, dataverse), 4),
        "share_answered_429_excluding_injected": round(max(0, limited - FAULTS) / max(1, dataverse), 4),
        "share_answered_execution_time_429": round(refused.get("0x80072321", 0) / max(1, dataverse), 4),
        "limit_429s_by_code": refused,
        "dataverse_requests_per_lead": round(dataverse / leads, 4),
        "entitlement_requests_per_lead": round(counters.get("entitlement_requests", 0) / leads, 3),
        "storage_round_trips_per_lead_app": round(trips / leads, 2),
        "storage_round_trips_per_lead_host_trigger": round(host_trips / leads, 2),
        "discarded_pool_connections": discarded,
        **integrity(admin, domains),
    }
    if bulk:
        figures["create_multiple_calls"] = sum(routes.get("lead_create_multiple", {}).values())
    return figures


def sections(
    group: ProcessGroup,
    connection: str,
    info: dict[str, Any],
    admin: SimulatorAdmin,
    args: argparse.Namespace,
    env: Any,
) -> dict[str, dict[str, Any]]:
    """Every (instances, path) run, then the ratios of the same run."""
    out: dict[str, dict[str, Any]] = {
        "deployed shape: limits": {
            "single": describe(single_limits()),
            "bulk": describe(bulk_limits()),
            "rate_budget_percent": RATE_BUDGET_PERCENT,
            "concurrency_budget": CONCURRENCY_BUDGET,
        }
    }
    counts = [int(n) for n in args.scale_instances.split(",") if n]
    for instances in counts:
        for bulk in (False, True):
            key = f"deployed shape: {instances} instances, {'bulk' if bulk else 'single'} path"
            out[key] = run(group, connection, info, admin, args, env, instances, bulk)
    for instances in counts:
        single = out[f"deployed shape: {instances} instances, single path"]
        bulk_run = out[f"deployed shape: {instances} instances, bulk path"]
        # The single path under the bulk run's limits would be bound by their request ceiling.
        bulk_request_ceiling = bulk_limits().max_requests / bulk_limits().window_seconds
        out[f"deployed shape: {instances} instances, ratios"] = {
            "bulk_over_single_leads_per_s_each_at_its_limits": round(
                bulk_run["leads_per_s"] / max(0.001, single["leads_per_s"]), 2
            ),
            "bulk_over_single_ceiling_at_the_bulk_limits": round(bulk_run["leads_per_s"] / bulk_request_ceiling, 1),
        }
    return out
