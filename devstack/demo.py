"""`make demo`: push the demo page's sample leads through a running `make run` stack and watch
their status change until each is done, then print a table with the Dynamics links.

Usage: python -m devstack.demo [--url http://127.0.0.1:7071] [--token TOKEN] [--timeout 120] [--no-hunter-db] [--verbose]
The URL and the bearer token default to the ones `make run` wrote to `.devstack/stack.json`
(`DEVSTACK_STATE_DIR` moves it).

The leads are the demo page's (`devstack/ui.py` SAMPLE_LEADS), so the page and the demo talk about
the same companies, plus one deliberately invalid lead that shows how the API rejects bad input.
Each lead ends as one of: created (a new lead in Dataverse), already there (the app had synced it
before and skipped it at intake, or the worker found it in Dataverse), rejected, or failed. When
the simulator is the Dataverse, the demo then checks that it holds every lead the app calls synced
and says so plainly when it does not (exit 1).

Hunter's side too, unless `--no-hunter-db`: the demo starts PostgreSQL (the tests' one,
`devstack/postgres.py`, about a second) with Hunter's database kept in `.devstack/hunter-postgres`
(beside Azurite's data, so the two stay in step; `make clean` resets both), gives Hunter's
`companies` table a `not_synced` row per sample it does not have yet, runs Hunter's results
consumer (`hunter_results`) in the background on the stack's results queue while the leads sync,
and prints each row as the seed's SQL check reads it:
`SELECT d365_lead_id, d365_sync_status, d365_sync_last_at FROM companies WHERE domain = '…'`.
PostgreSQL runs only while the demo does; `make run` itself does not start it. The consumer's own
log lines (JSON) are shown only with `--verbose`; without it, its failures are one plain line each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from devstack.simulator import SimulatorAdmin
from devstack.ui import SAMPLE_LEADS
from shared.domains import InvalidDomain, normalize_domain

ROOT = Path(__file__).resolve().parent.parent
# The deliberately bad lead: the API refuses it at intake (400-style, per item), nothing is queued.
DELIBERATE_FAILURE: dict[str, Any] = {"domain": "not a domain", "company_name": "Typo Inc."}
SAMPLES: list[dict[str, Any]] = [*SAMPLE_LEADS, DELIBERATE_FAILURE]
DONE = {"synced", "error"}


def state_dir() -> Path:
    """`DEVSTACK_STATE_DIR`, else `.devstack` (as `make run`)."""
    return Path(os.environ.get("DEVSTACK_STATE_DIR") or ROOT / ".devstack")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    stack_file = state_dir() / "stack.json"
    stack = json.loads(stack_file.read_text()) if stack_file.exists() else {}
    parser.add_argument("--url", default=stack.get("host_url", "http://127.0.0.1:7071"))
    parser.add_argument(
        "--token", default=stack.get("api_token", ""), help="bearer token for the API (make run writes one)"
    )
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--no-hunter-db", action="store_true", help="skip Hunter's database and results consumer")
    parser.add_argument("--verbose", action="store_true", help="show the results consumer's JSON log lines")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as cleanup:
        hunter = None if args.no_hunter_db else cleanup.enter_context(hunter_database(stack, args.verbose))
        return push_and_watch(args, stack, hunter)


def describe(item: dict[str, Any], state: dict[str, Any]) -> str:
    """created / already there / skipped / failed, in words, for one accepted lead."""
    if item["status"] == "skipped":
        return "already there (synced before: skipped at intake)"
    outcome = state.get("last_outcome") or ""
    if state.get("status") == "synced":
        return {"created": "created", "recreated": "created again (the old lead was gone)"}.get(
            outcome, "already there (found in Dataverse)"
        )
    return f"{state.get('status')} ({outcome or 'no outcome yet'})"


def push_and_watch(args: argparse.Namespace, stack: dict[str, Any], hunter: HunterSide | None) -> int:
    """Push the samples, watch their status until done, print them (and Hunter's rows).

    Returns 0 when every valid lead is synced (and, with the simulator as Dataverse, held by it)."""
    api = f"{args.url}/api/v1/d365"
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {args.token}"
    try:
        response = http.post(f"{api}/push-leads", json={"leads": SAMPLES}, timeout=30)
    except requests.ConnectionError:
        print(f"Nothing answers at {args.url}: start the stack with `make run` in another terminal.", file=sys.stderr)
        return 1
    if response.status_code != 202:
        print(
            f"POST push-leads → HTTP {response.status_code}: {response.text[:300] or '(empty body)'}", file=sys.stderr
        )
        if response.status_code in (401, 403):
            print("The token is missing or expired: restart `make run` (it writes a new one).", file=sys.stderr)
        return 1
    body = response.json()
    items: list[dict[str, Any]] = body["items"]
    queued = [item for item in items if item["status"] == "queued"]
    skipped = [item for item in items if item["status"] == "skipped"]
    print(
        f"POST push-leads → HTTP 202: {len(queued)} queued, {len(skipped)} already synced (skipped), "
        f"{body['rejected']} rejected"
    )
    for item in items:
        if item["status"] == "rejected":
            deliberate = SAMPLES[item["index"]] is DELIBERATE_FAILURE
            label = "deliberately invalid, to show a rejection" if deliberate else "rejected"
            print(f"  #{item['index']} {SAMPLES[item['index']]['domain']!r}: {label} — {item['message']}")
    accepted = [item for item in items if item["status"] in ("queued", "skipped")]
    domains = [str(item["domain"]) for item in accepted]
    states = watch(http, api, [str(item["domain"]) for item in queued], args.timeout)
    for item in skipped:
        states[item["domain"]] = http.get(f"{api}/leads/{item['domain']}", timeout=10).json()
    print()
    print(f"{'domain':<32} {'result':<44} link")
    for item in accepted:
        state = states[item["domain"]]
        link = state.get("d365_url") or state.get("last_error") or ""
        print(f"{item['domain']:<32} {describe(item, state):<44} {link}")
    held = True
    if stack.get("simulator_url") and stack.get("dataverse_simulated", True):
        admin = SimulatorAdmin(stack["simulator_url"], verify=stack["ca_bundle"], timeout=10)
        held = check_simulated_dataverse(admin, states)
    if hunter is not None:
        hunter.show(domains, {d: str(states[d]["status"]) for d in domains}, {str(i["domain"]) for i in skipped})
    return 0 if held and all(states[d].get("status") == "synced" for d in domains) else 1


def watch(http: requests.Session, api: str, domains: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Poll each domain's status, printing every change, until all are done or `timeout` passes."""
    last: dict[str, str] = {}
    states: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for domain in domains:
            states[domain] = http.get(f"{api}/leads/{domain}", timeout=10).json()
            status = str(states[domain].get("status"))
            if last.get(domain) != status:
                print(f"  {time.strftime('%H:%M:%S')}  {domain:<32} {last.get(domain, '-'):>10} → {status}")
                last[domain] = status
        if all(last.get(d) in DONE for d in domains):
            break
        time.sleep(0.5)
    return states


class HunterSide:
    """Hunter's database (a local PostgreSQL) and its results consumer looping in a thread."""

    def __init__(self, url: str, consumer: Any) -> None:
        self.url = url
        self.consumer = consumer

    def show(self, domains: list[str], statuses: dict[str, str], skipped: set[str], timeout: float = 30) -> None:
        """Wait until the consumer has applied every outcome, then print the seed's SELECT per domain."""
        from devstack.hunter_db import SEED_SELECT, company

        skipped_only = False

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = {d: company(self.url, d) for d in domains}
            if all(row and row["d365_sync_status"] == statuses[d] for d, row in rows.items()) or skipped_only:
                break
            # Skipped at intake: no outcome comes for those; the others have had their time.
            skipped_only = all(
                d in skipped or (row and row["d365_sync_status"] == statuses[d]) for d, row in rows.items()
            )
            time.sleep(0.3)
        print(f"\nHunter's database (local PostgreSQL), after the results consumer: {self.consumer.totals.summary()}")
        print(f"  {SEED_SELECT.replace('%s', chr(39) + '<domain>' + chr(39))};")
        print(f"  {'domain':<28} | {'d365_lead_id':<36} | {'d365_sync_status':<16} | d365_sync_last_at")
        print(f"  {'-' * 28}-+-{'-' * 36}-+-{'-' * 16}-+-{'-' * 26}")
        for domain in domains:
            row = company(self.url, domain) or {}
            last_at = row.get("d365_sync_last_at")
            print(
                f"  {domain:<28} | {row.get('d365_lead_id') or '':<36} | {row.get('d365_sync_status') or '':<16} | "
                f"{last_at.isoformat(sep=' ', timespec='milliseconds') if last_at else ''}"
            )
            if statuses[domain] == "synced" and row.get("d365_sync_status") != "synced":
                print(
                    f"  {'':<28}   (synced before this database had the row, so no outcome is on its way: a "
                    "batch skips a verified domain at intake; `make clean` starts the stack and Hunter afresh)"
                )
            if row.get("d365_sync_error"):
                print(f"  {'':<28}   d365_sync_error: {row['d365_sync_error']}")


@contextlib.contextmanager
def hunter_database(stack: dict[str, Any], verbose: bool = False) -> Iterator[HunterSide | None]:
    """Start PostgreSQL with an empty `companies` table and the consumer; stop both at the end."""
    connection = stack.get("storage_connection_string")
    if not connection:
        print("(Hunter's database skipped: .devstack/stack.json names no local storage; is `make run` running?)")
        yield None
        return
    from devstack.hunter_db import add_company, create_companies
    from devstack.postgres import LocalPostgres, PostgresUnavailable
    from hunter_results import Consumer, ConsumerSettings

    if stack.get("ca_bundle"):  # Azurite over HTTPS: the system CAs plus the simulator's
        os.environ["REQUESTS_CA_BUNDLE"] = stack["ca_bundle"]
    from hunter_results.__main__ import JsonLines

    handler = logging.StreamHandler(sys.stderr)
    if verbose:  # the consumer's warnings and failures, as the JSON lines it logs in production
        handler.setFormatter(JsonLines())
        handler.setLevel(logging.WARNING)
    else:  # its failures only, one plain line each
        handler.setFormatter(logging.Formatter("Hunter's results consumer: %(message)s"))
        handler.setLevel(logging.ERROR)
    logging.getLogger("hunter_results").addHandler(handler)
    try:
        server = LocalPostgres(keep_in=state_dir() / "hunter-postgres").start()
    except PostgresUnavailable as exc:
        print(f"(Hunter's database skipped: {exc})")
        yield None
        return
    stop = threading.Event()
    try:
        url = server.create_database("hunter")
        create_companies(url)
        # Hunter has its companies before the consumer reads any outcome (the demo page's pushes
        # too: same samples), so none of them is an unknown domain.
        for sample in SAMPLES:
            with contextlib.suppress(InvalidDomain):
                add_company(url, normalize_domain(str(sample["domain"])))
        settings = ConsumerSettings.from_env(
            {
                "HUNTER_RESULTS_DATABASE_URL": url,
                "AzureWebJobsStorage": connection,
                "HUNTER_D365_RESULTS_QUEUE": stack.get("results_queue", "d365-lead-push-results"),
                "HUNTER_RESULTS_POLL_MIN_SECONDS": "0.2",
                "HUNTER_RESULTS_POLL_MAX_SECONDS": "1",
            }
        )
        consumer = Consumer(settings)
        thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
        thread.start()
        print(f"Hunter's database: PostgreSQL on 127.0.0.1:{server.port}, results consumer on {settings.queue_name}")
        yield HunterSide(url, consumer)
        stop.set()
        thread.join(timeout=10)
    finally:
        stop.set()
        server.stop()


def check_simulated_dataverse(admin: SimulatorAdmin, states: dict[str, dict[str, Any]]) -> bool:
    """Print what the simulated Dataverse holds and the requests it answered; True when it holds
    every lead the app calls synced (after a restart that lost them, say so instead of linking to
    leads that are not there)."""
    leads = admin.leads()
    print(f"\nThe simulated Dataverse holds {len(leads)} lead(s); requests it answered, by route and status:")
    for route, by_status in sorted(admin.routes().items()):
        print(f"  {route:<14} " + "  ".join(f"{status}×{n}" for status, n in sorted(by_status.items())))
    ids = {str(lead.get("leadid")) for lead in leads}
    missing = [d for d, s in states.items() if s.get("status") == "synced" and s.get("d365_lead_id") not in ids]
    for domain in missing:
        print(
            f"  NOT HELD: {domain} is synced in the app's records as {states[domain].get('d365_lead_id')}, but the "
            "simulated Dataverse has no such lead (its state was reset apart from storage's): `make clean`, then "
            "`make run`, starts both afresh"
        )
    return not missing


if __name__ == "__main__":
    raise SystemExit(main())
