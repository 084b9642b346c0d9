"""`make demo`: push a handful of sample leads through a running `make run` stack and watch their
status change until each is done, then print a table with the Dynamics links.

Usage: python -m devstack.demo [--url http://127.0.0.1:7071] [--key FUNCTION_KEY] [--timeout 120] [--no-hunter-db]
The function key defaults to the one `make run` wrote to .devstack/stack.json. When `make run` started
the simulator, the demo ends with what the simulated Dataverse holds (its admin API).

Hunter's side too, unless `--no-hunter-db`: the demo starts PostgreSQL (the tests' one,
`devstack/postgres.py`, about a second) with Hunter's database kept in `.devstack/hunter-postgres`
(beside Azurite's data, so the two stay in step; `make clean` resets both), gives Hunter's
`companies` table a `not_synced` row per sample it does not have yet, runs Hunter's results
consumer (`hunter_results`) in the background on the stack's results queue while the leads sync,
and prints each row as the seed's SQL check reads it:
`SELECT d365_lead_id, d365_sync_status, d365_sync_last_at FROM companies WHERE domain = '…'`.
PostgreSQL runs only while the demo does; `make run` itself does not start it.
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
from shared.domains import InvalidDomain, normalize_domain

ROOT = Path(__file__).resolve().parent.parent
SAMPLES: list[dict[str, Any]] = [
    {
        "domain": "northwind-traders.example",
        "company_name": "Northwind Traders",
        "final_score": 91,
        "segment": "enterprise",
        "priority": 1,
        "city": "Seattle",
        "country": "United States",
        "email": "sales@northwind-traders.example",
    },
    {
        "domain": "contoso-pharma.example",
        "company_name": "Contoso Pharma",
        "final_score": 64,
        "segment": "mid-market",
        "priority": 2,
        "city": "Basel",
        "country": "Switzerland",
    },
    {
        "domain": "https://www.fabrikam-robotics.example/about",
        "company_name": "Fabrikam Robotics",
        "final_score": 38,
        "segment": "smb",
        "priority": 3,
        "city": "Munich",
        "country": "Germany",
    },
    {
        "domain": "adatum-logistics.example",
        "company_name": "Adatum Logistics",
        "final_score": 77,
        "city": "Rotterdam",
        "country": "Netherlands",
    },
    {
        "domain": "bücherhaus.example",
        "company_name": "Bücherhaus",
        "final_score": 55,
        "city": "Wien",
        "country": "Austria",
    },
    {"domain": "not a domain", "company_name": "Typo Inc."},
]
DONE = {"synced", "error"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    stack_file = ROOT / ".devstack" / "stack.json"
    stack = json.loads(stack_file.read_text()) if stack_file.exists() else {}
    parser.add_argument("--url", default=stack.get("host_url", "http://127.0.0.1:7071"))
    parser.add_argument(
        "--token", default=stack.get("api_token", ""), help="bearer token for the API (make run writes one)"
    )
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--no-hunter-db", action="store_true", help="skip Hunter's database and results consumer")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as cleanup:
        hunter = None if args.no_hunter_db else cleanup.enter_context(hunter_database(stack))
        return push_and_watch(args, stack, hunter)


def push_and_watch(args: argparse.Namespace, stack: dict[str, Any], hunter: HunterSide | None) -> int:
    """Push the samples, watch their status until done, print them (and Hunter's rows)."""
    api = f"{args.url}/api/v1/d365"
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {args.token}"
    if hunter is not None:  # Hunter has its companies before anyone presses the button
        for sample in SAMPLES:
            with contextlib.suppress(InvalidDomain):
                hunter.add(normalize_domain(str(sample["domain"])))
    try:
        response = http.post(f"{api}/push-leads", json={"leads": SAMPLES}, timeout=30)
    except requests.ConnectionError:
        print(f"Nothing answers at {args.url}: start the stack with `make run` in another terminal.", file=sys.stderr)
        return 1
    body = response.json()
    print(f"POST push-leads → HTTP {response.status_code}: {body['accepted']} accepted, {body['rejected']} rejected")
    domains: list[str] = []
    for item in body["items"]:
        if item["status"] == "rejected":
            print(f"  rejected #{item['index']}: {item['message']}")
        else:
            domains.append(item["domain"])
    last: dict[str, str] = {}
    states: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        for domain in domains:
            states[domain] = http.get(f"{api}/leads/{domain}", timeout=10).json()
            status = str(states[domain]["status"])
            if last.get(domain) != status:
                print(f"  {time.strftime('%H:%M:%S')}  {domain:<32} {last.get(domain, '-'):>10} → {status}")
                last[domain] = status
        if all(last.get(d) in DONE for d in domains):
            break
        time.sleep(0.5)
    print()
    print(f"{'domain':<32} {'status':<9} {'outcome':<15} link")
    for domain in domains:
        state = states[domain]
        link = state.get("d365_url") or state.get("last_error") or ""
        print(f"{domain:<32} {state['status']!s:<9} {state.get('last_outcome') or '':<15} {link}")
    if stack.get("simulator_url"):
        show_simulated_dataverse(SimulatorAdmin(stack["simulator_url"], verify=stack["ca_bundle"], timeout=10))
    if hunter is not None:
        skipped = {str(item["domain"]) for item in body["items"] if item["status"] == "skipped"}
        hunter.show(domains, {d: str(states[d]["status"]) for d in domains}, skipped)
    return 0 if all(last.get(d) == "synced" for d in domains) else 1


class HunterSide:
    """Hunter's database (a local PostgreSQL) and its results consumer looping in a thread."""

    def __init__(self, url: str, consumer: Any) -> None:
        self.url = url
        self.consumer = consumer

    def add(self, domain: str) -> None:
        """A `not_synced` row for `domain` (the app's key for it: normalised, as Hunter should store it)."""
        from devstack.hunter_db import add_company

        add_company(self.url, domain)

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
def hunter_database(stack: dict[str, Any]) -> Iterator[HunterSide | None]:
    """Start PostgreSQL with an empty `companies` table and the consumer; stop both at the end."""
    connection = stack.get("storage_connection_string")
    if not connection:
        print("(Hunter's database skipped: .devstack/stack.json names no local storage; is `make run` running?)")
        yield None
        return
    from devstack.hunter_db import create_companies
    from devstack.postgres import LocalPostgres, PostgresUnavailable
    from hunter_results import Consumer, ConsumerSettings

    if stack.get("ca_bundle"):  # Azurite over HTTPS: the system CAs plus the simulator's
        os.environ["REQUESTS_CA_BUNDLE"] = stack["ca_bundle"]
    from hunter_results.__main__ import JsonLines

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    handler.setLevel(logging.WARNING)  # the consumer's warnings and failures, as JSON lines
    logging.getLogger("hunter_results").addHandler(handler)
    try:
        server = LocalPostgres(keep_in=ROOT / ".devstack" / "hunter-postgres").start()
    except PostgresUnavailable as exc:
        print(f"(Hunter's database skipped: {exc})")
        yield None
        return
    stop = threading.Event()
    try:
        url = server.create_database("hunter")
        create_companies(url)
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


def show_simulated_dataverse(admin: SimulatorAdmin) -> None:
    """What the simulated Dataverse holds and the requests it answered, from its admin API."""
    leads = admin.leads()
    print(f"\nThe simulated Dataverse holds {len(leads)} lead(s); requests it answered, by route and status:")
    for route, by_status in sorted(admin.routes().items()):
        print(f"  {route:<14} " + "  ".join(f"{status}×{n}" for status, n in sorted(by_status.items())))


if __name__ == "__main__":
    raise SystemExit(main())
