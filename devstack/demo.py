"""`make demo`: push a handful of sample leads through a running `make run` stack and watch their
status change until each is done, then print a table with the Dynamics links.

Usage: python -m devstack.demo [--url http://127.0.0.1:7071] [--key FUNCTION_KEY] [--timeout 120]
The function key defaults to the one `make run` wrote to .devstack/stack.json. When `make run` started
the simulator, the demo ends with what the simulated Dataverse holds (its admin API).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests

from devstack.simulator import SimulatorAdmin

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = [
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
    args = parser.parse_args(argv)
    api = f"{args.url}/api/v1/d365"
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {args.token}"
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
    return 0 if all(last.get(d) == "synced" for d in domains) else 1


def show_simulated_dataverse(admin: SimulatorAdmin) -> None:
    """What the simulated Dataverse holds and the requests it answered, from its admin API."""
    leads = admin.leads()
    print(f"\nThe simulated Dataverse holds {len(leads)} lead(s); requests it answered, by route and status:")
    for route, by_status in sorted(admin.routes().items()):
        print(f"  {route:<14} " + "  ".join(f"{status}×{n}" for status, n in sorted(by_status.items())))


if __name__ == "__main__":
    raise SystemExit(main())
