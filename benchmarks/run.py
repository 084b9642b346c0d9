"""Benchmarks: figures printed as a table and written as JSON (never timed tests).

    python -m benchmarks.run [--leads 3000] [--rate 50] [--window 10] [--latency-ms 30]

1. Dataverse calls per push, counted by the simulator, for each kind of push; token requests
   per process.
2. Throughput against the ceiling: the simulator enforces a scaled-down service-protection limit
   (`--rate` requests/s over a `--window` s sliding window, 52 concurrent) with `--latency-ms`
   per request; `--leads` leads go HTTP intake (batches of 1000) → queue → local host →
   simulator. Reported: leads/s and its fraction of the ceiling, 429s received, end-to-end
   p50/p95 (enqueued → synced), lost and duplicate leads.
3. Batch intake: leads/s of the 1000-lead requests of step 2 against a sequential
   `send_message` loop in the same run.
4. Cold start: `import function_app` time and peak memory in a fresh interpreter, and the
   number of network calls it makes (audited, must be 0).
5. Issue 15 (`--only single,bulk,peer`, one run, the same limits): the single path at the request
   ceiling, the bulk path at the execution-time ceiling, and Microsoft's SDK as a peer — see
   `benchmarks/bulk.py`.
6. Issue 20 (`scale`, in the default run): the deployed shape — N host processes on one queue,
   one table and one simulator with Bicep's settings — see `benchmarks/scale.py`.

Everything runs on loopback: Azurite, the simulator and the host are child processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from benchmarks import bulk, scale
from devstack.processes import ROOT, ProcessGroup, api_token, easy_auth_settings, simulator_env
from devstack.simulator import DEFAULT_SECRET, SimulatorAdmin
from devstack.simulator.directory import OPERATOR_CLIENT_ID, OPERATOR_SECRET

DATAVERSE_ROUTES = ("lead_", "whoami", "metadata")
# The local host plays App Service Authentication as Azure does: every call sends a bearer token of
# the operator app (both app roles), fetched once per host before anything is measured (app_env).
HTTP = requests.Session()
# The Python worker's pool size that Bicep sets in Azure (PYTHON_THREADPOOL_THREAD_COUNT): the
# benchmarks run with the value Azure will have, not this machine's min(32, cpus + 4).
AZURE_THREADPOOL_THREAD_COUNT = "16"


def counts(admin: SimulatorAdmin) -> tuple[int, int, int]:
    """(Dataverse requests, token requests, 429s) the simulator has answered so far."""
    routes = admin.routes()
    dataverse = sum(n for r, by in routes.items() if r.startswith(DATAVERSE_ROUTES) for n in by.values())
    tokens = sum(routes.get("token", {}).values())
    limited = sum(by.get("429", 0) for r, by in routes.items() if r.startswith(DATAVERSE_ROUTES))
    return dataverse, tokens, limited


def app_env(connection: str, info: dict[str, Any], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUNTER_", "AzureWebJobs"))}
    env.update(simulator_env(info))
    if "Authorization" not in HTTP.headers:
        HTTP.headers["Authorization"] = (
            f"Bearer {api_token(info, OPERATOR_CLIENT_ID, OPERATOR_SECRET, info['ca_bundle'])}"
        )
    env.update(
        {
            "AzureWebJobsStorage": connection,
            "HUNTER_D365_CLIENT_SECRET": DEFAULT_SECRET,
            "HUNTER_D365_QUEUE": "bench-push",
            "HUNTER_D365_RESULTS_QUEUE": "bench-results",
            "HUNTER_D365_STATE_TABLE": "benchstate",
            "PYTHONPATH": str(ROOT),
            **easy_auth_settings(info, []),
            "PYTHON_THREADPOOL_THREAD_COUNT": AZURE_THREADPOOL_THREAD_COUNT,
            **extra,
        }
    )
    return env


# -- 1. calls per push ------------------------------------------------------------------------


def calls_per_push(connection: str, info: dict[str, Any], admin: SimulatorAdmin) -> dict[str, Any]:
    os.environ["REQUESTS_CA_BUNDLE"] = info["ca_bundle"]
    figures: dict[str, Any] = {}
    for key in ("false", "true"):
        figures.update(_calls_with(key, connection, info, admin))
    return figures


def _calls_with(key: str, connection: str, info: dict[str, Any], admin: SimulatorAdmin) -> dict[str, int]:
    """Calls per kind of push, with (`key="true"`) or without the alternate key, in one process."""
    from shared.config import Settings
    from shared.engine import process_message as process
    from shared.models import LeadPush
    from shared.pipeline import accept, accept_batch
    from shared.services import build_services

    env = app_env(
        connection,
        info,
        HUNTER_D365_DOMAIN_KEY=key,
        HUNTER_D365_STATE_TABLE=f"calls{key}",
        HUNTER_D365_QUEUE=f"calls-{key}",
        HUNTER_D365_RESULTS_QUEUE=f"calls-{key}-results",
    )
    services = build_services(Settings.from_env(env))
    label = "with alternate key" if key == "true" else "without alternate key"
    tokens_before = counts(admin)[1]
    stamp = int(time.time())
    domain = f"calls-{key}-{stamp}.example"
    lead = LeadPush(domain=domain, company_name="Bench")
    repush = LeadPush(domain=domain).to_json().encode()
    batch = [LeadPush(domain=f"calls-{key}-{stamp}-{i}.example") for i in range(100)]

    def measure(action: Any) -> int:
        before = counts(admin)[0]
        action()
        return counts(admin)[0] - before

    figures = {
        f"new lead, {label}": measure(lambda: process(lead.to_json().encode(), services)),
        f"re-push of a synced lead (push-lead), intake, {label}": measure(lambda: accept(lead, services)),
        f"re-push of a synced lead (push-lead), worker's verify, {label}": measure(lambda: process(repush, services)),
    }
    for item in batch:
        process(item.to_json().encode(), services)
    forced = [replace(item, force=True) for item in batch]
    figures[f"batch re-push of 100 synced leads within the verification TTL, {label}"] = measure(
        lambda: accept_batch(batch, services)
    )
    figures[f"batch re-push of 100 synced leads, verified now (force), {label}"] = measure(
        lambda: accept_batch(forced, services)
    )
    state = services.state.get(domain)
    assert state is not None and state.d365_lead_id
    admin.delete_lead(state.d365_lead_id)
    figures[f"stored id lost in Dataverse, {label}"] = measure(lambda: process(repush, services))
    figures[f"token requests for this process ({label})"] = counts(admin)[1] - tokens_before
    return figures


# -- 2 and 3. throughput and batch intake -----------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def throughput(
    group: ProcessGroup, connection: str, info: dict[str, Any], admin: SimulatorAdmin, args: argparse.Namespace
) -> dict[str, Any]:
    admin.reset()
    admin.configure(latency_ms=args.latency_ms)
    admin.set_limits(max_requests=int(args.rate * args.window), window_seconds=args.window, max_concurrent=52)
    env = app_env(
        connection,
        info,
        HUNTER_D365_DOMAIN_KEY="true",
        HUNTER_D365_BULK_SIZE="1",  # this section measures the single path (one message per lead)
        HUNTER_D365_RETRY_BASE_SECONDS="0.5",
        HUNTER_D365_RETRY_CAP_SECONDS="30",
        HUNTER_D365_RETRY_JITTER_SECONDS="0.5",
        HUNTER_D365_MAX_ATTEMPTS="30",
        HUNTER_D365_CLAIM_RETRY_SECONDS="0.5",
        LOG_LEVEL="WARNING",
        AzureFunctionsJobHost__extensions__queues__maxPollingInterval="00:00:00.200",
    )
    url, _ = group.host(env)
    run_id = int(time.time())
    domains = [f"t{run_id}-{i}.example" for i in range(args.leads)]
    intake_rates: list[float] = []
    started = time.time()
    for offset in range(0, len(domains), 1000):
        chunk = [{"domain": d, "company_name": f"Bench {d}"} for d in domains[offset : offset + 1000]]
        t0 = time.perf_counter()
        response = HTTP.post(f"{url}/api/v1/d365/push-leads", json={"leads": chunk}, timeout=300)
        elapsed = time.perf_counter() - t0
        body = response.json()
        assert response.status_code == 202 and body["accepted"] == len(chunk), body
        intake_rates.append(len(chunk) / elapsed)
        print(f"  intake: {len(chunk)} leads in {elapsed:.2f} s", flush=True)
    results = QueueClient.from_connection_string(
        connection,
        "bench-results",
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
        api_version="2021-12-02",
    )
    outcomes: list[dict[str, Any]] = []
    deadline = time.time() + args.timeout
    last_report = 0.0
    while len(outcomes) < len(domains) and time.time() < deadline:
        batch = list(results.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=300))
        for message in batch:
            outcomes.append(json.loads(message.content))
            results.delete_message(message)
        if not batch:
            time.sleep(0.5)
        if time.time() - last_report > 5:
            print(f"  synced {len(outcomes)}/{len(domains)} after {time.time() - started:.0f} s", flush=True)
            last_report = time.time()
    leads = admin.leads()
    present = [lead["hnt_domain"] for lead in leads]
    dataverse, _, limited = counts(admin)
    wanted = set(domains)
    outcomes = [o for o in outcomes if o["domain"] in wanted]
    synced = [o for o in outcomes if o["status"] == "synced"]
    first = min(parse(o["enqueued_at"]) for o in synced)
    last = max(parse(o["at"]) for o in synced)
    latencies = [parse(o["at"]) - parse(o["enqueued_at"]) for o in synced]
    rate = len(synced) / (last - first)
    ceiling = args.rate  # one Dataverse request per new lead with the alternate key
    figures = {
        "leads": len(domains),
        "ceiling_requests_per_s": ceiling,
        "window_s": args.window,
        "latency_ms_per_request": args.latency_ms,
        "synced": len(synced),
        "errors": len(outcomes) - len(synced),
        "leads_per_s": round(rate, 1),
        "fraction_of_ceiling": round(rate / ceiling, 3),
        "dataverse_requests": dataverse,
        "http_429_received": limited,
        "p50_enqueued_to_synced_s": round(percentile(latencies, 0.5), 2),
        "p95_enqueued_to_synced_s": round(percentile(latencies, 0.95), 2),
        "lost": len(set(domains) - set(present)),
        "duplicates": len(present) - len(set(present)),
        "max_concurrent_seen": admin.counters()["max_concurrent_seen"],
    }
    return figures


def push_batch(url: str, domains: list[str]) -> float:
    """POST one batch; returns its leads/s."""
    leads = [{"domain": d, "company_name": f"Bench {d}"} for d in domains]
    t0 = time.perf_counter()
    response = HTTP.post(f"{url}/api/v1/d365/push-leads", json={"leads": leads}, timeout=300)
    elapsed = time.perf_counter() - t0
    body = response.json()
    assert response.status_code == 202 and body["accepted"] == len(leads), body
    print(f"  intake: {len(leads)} leads in {elapsed:.2f} s", flush=True)
    return len(leads) / elapsed


def batch_intake(group: ProcessGroup, connection: str, info: dict[str, Any], rounds: int = 3) -> dict[str, Any]:
    """1000 leads per request against a sequential `send_message` loop, both on an idle Azurite:
    the worker is disabled (`AzureWebJobs.push_worker.Disabled`) so nothing competes with intake."""
    env = app_env(
        connection,
        info,
        HUNTER_D365_QUEUE="intake-push",
        HUNTER_D365_STATE_TABLE="intakestate",
        LOG_LEVEL="WARNING",
        **{"AzureWebJobs.push_worker.Disabled": "true"},
    )
    url, _ = group.host(env, name="intake-host")
    stamp = int(time.time())
    batch = [push_batch(url, [f"in{stamp}-{r}-{i}.example" for i in range(1000)]) for r in range(rounds)]
    scratch = QueueClient.from_connection_string(
        connection, "intake-sequential", message_encode_policy=TextBase64EncodePolicy(), api_version="2021-12-02"
    )
    scratch.create_queue()
    sequential = []
    for r in range(rounds):
        t0 = time.perf_counter()
        for i in range(1000):
            scratch.send_message(json.dumps({"schema_version": 1, "domain": f"seq-{r}-{i}.example"}))
        sequential.append(1000 / (time.perf_counter() - t0))
    batch_rate = round(statistics.median(batch), 1)
    sequential_rate = round(statistics.median(sequential), 1)
    return {
        "rounds": rounds,
        "batch_1000_leads_per_s_median": batch_rate,
        "sequential_send_message_per_s_median": sequential_rate,
        "ratio_batch_to_sequential": round(batch_rate / sequential_rate, 2),
        "storage_calls_per_lead_batch": "1 send + 1 state write (+ 1 state query per 14 leads)",
        "storage_calls_per_lead_sequential": "1 send",
    }


def idle_latency(
    group: ProcessGroup, connection: str, info: dict[str, Any], admin: SimulatorAdmin, samples: int
) -> dict[str, Any]:
    """Click to synced on an idle app: one push at a time, with pauses that let polling back off."""
    admin.reset()
    env = app_env(
        connection,
        info,
        HUNTER_D365_DOMAIN_KEY="true",
        HUNTER_D365_QUEUE="idle-push",
        HUNTER_D365_RESULTS_QUEUE="idle-results",
        HUNTER_D365_STATE_TABLE="idlestate",
        LOG_LEVEL="WARNING",
    )
    url, _ = group.host(env, name="idle-host")
    seconds: list[float] = []
    for i in range(samples):
        time.sleep(2.5)  # longer than maxPollingInterval (2 s): the queue is idle
        domain = f"idle-{int(time.time())}-{i}.example"
        t0 = time.perf_counter()
        HTTP.post(f"{url}/api/v1/d365/push-lead", json={"domain": domain}, timeout=30)
        while HTTP.get(f"{url}/api/v1/d365/leads/{domain}", timeout=30).json()["status"] != "synced":
            time.sleep(0.02)
        seconds.append(time.perf_counter() - t0)
    return {
        "samples": samples,
        "p50_s": round(percentile(seconds, 0.5), 2),
        "p95_s": round(percentile(seconds, 0.95), 2),
    }


# -- 4. cold start ----------------------------------------------------------------------------

COLD_START = """
import json, resource, sys, time
events = []
# Traffic, not sockets: urllib3 binds a socket to ::1 at import to probe for IPv6, locally.
NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg"}
sys.addaudithook(lambda event, args: events.append(event) if event in NETWORK else None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
import function_app
elapsed = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_rss_mb": after / 1024, "rss_added_mb": (after - before) / 1024,
                  "network_calls": events}))
"""


def cold_start(runs: int = 5) -> dict[str, Any]:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", COLD_START],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={k: v for k, v in os.environ.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"},
        )
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "runs": runs,
        "import_s_median": round(statistics.median(s["seconds"] for s in samples), 3),
        "peak_rss_mb_median": round(statistics.median(s["peak_rss_mb"] for s in samples), 1),
        "rss_added_by_import_mb_median": round(statistics.median(s["rss_added_mb"] for s in samples), 1),
        "network_calls": sorted({e for s in samples for e in s["network_calls"]}),
    }


# -- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def report(figures: dict[str, Any]) -> None:
    print("\n" + "=" * 78)
    for section, values in figures.items():
        print(f"\n{section}")
        for name, value in values.items():
            print(f"  {name:<62} {value}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=20.0, help="simulated ceiling, requests/s")
    parser.add_argument("--window", type=float, default=10.0, help="service-protection window, s")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--idle-samples", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument(
        "--only",
        default="cold,calls,idle,throughput,batch,scale",
        help="comma-separated sections to run (cold, calls, idle, throughput, batch, scale; and single, bulk, "
        "peer, which run against Dataverse's documented limits scaled by --limit-scale); default the first six",
    )
    parser.add_argument(
        "--limit-scale", type=float, default=0.1, help="both documented limits × this (single/bulk/peer)"
    )
    parser.add_argument("--limit-window", type=float, default=60.0, help="sliding window, s (single/bulk/peer)")
    parser.add_argument("--single-leads", type=int, default=400)
    parser.add_argument("--bulk-leads", type=int, default=5000)
    parser.add_argument("--bulk-size", type=int, default=100, help="leads per bulk message / SDK chunk")
    parser.add_argument("--scale-instances", default="4,8", help="host processes per deployed-shape run (scale)")
    parser.add_argument("--scale-leads", type=int, default=5000, help="backlog per deployed-shape run (scale)")
    parser.add_argument("--quick", action="store_true", help="scale: a 1000-lead backlog instead")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latest.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the app's own events would drown the figures
    state = Path(tempfile.mkdtemp(prefix="hunter-bench-"))
    group = ProcessGroup(state)
    figures: dict[str, Any] = {"machine": machine()}
    sections = set(args.only.split(","))
    try:
        if "cold" in sections:
            print("cold start…", flush=True)
            figures["cold start (import function_app)"] = cold_start()
        connection, _ = group.azurite()
        info = group.simulator()
        admin = SimulatorAdmin(info["base_url"], verify=info["ca_bundle"], timeout=60)
        if "calls" in sections:
            print("calls per push…", flush=True)
            figures["Dataverse calls per push"] = calls_per_push(connection, info, admin)
        if "idle" in sections:
            print("idle click-to-synced…", flush=True)
            figures["click to synced on an idle app"] = idle_latency(group, connection, info, admin, args.idle_samples)
        if "throughput" in sections:
            print(f"throughput: {args.leads} leads against {args.rate:g} requests/s…", flush=True)
            figures["throughput against the ceiling"] = throughput(group, connection, info, admin, args)
        if "batch" in sections:
            print("batch intake…", flush=True)
            figures["batch intake"] = batch_intake(group, connection, info)
        if sections & {"single", "bulk", "peer"}:
            figures["simulated limits and cost model"] = bulk.model(args)
        if "single" in sections:
            print(f"single path: {args.single_leads} leads…", flush=True)
            figures["single path at the request ceiling"] = bulk.single_path(
                group, connection, info, admin, args, app_env
            )
        if "bulk" in sections:
            print(f"bulk path: {args.bulk_leads} leads…", flush=True)
            figures["bulk path at the execution-time ceiling"] = bulk.bulk_path(
                group, connection, info, admin, args, app_env
            )
        if "peer" in sections:
            print(f"peer (Microsoft's SDK): {args.bulk_leads} leads…", flush=True)
            figures["peer: Microsoft's Dataverse SDK from a script"] = bulk.sdk_peer(info, admin, args)
        if sections & {"single", "bulk", "peer"}:
            figures["issue 15 ratios (same run)"] = bulk.comparison(figures)
        if "scale" in sections:
            if args.quick:
                args.scale_leads = 1000
            print(f"deployed shape: {args.scale_instances} instances, {args.scale_leads} leads per run…", flush=True)
            figures.update(scale.sections(group, connection, info, admin, args, app_env))
    finally:
        group.stop()
    report(figures)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"figures written to {out}; logs in {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
