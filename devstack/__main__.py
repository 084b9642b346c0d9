"""`python -m devstack up`: Azurite + the simulator + the local Functions host, on embedded
defaults, with a curl that pushes a lead. Ctrl-C stops everything.

Settings, highest first: the environment, `local.settings.json` Values, the embedded defaults
below. Setting `HUNTER_D365_BASE_URL` (environment or local.settings.json) points the stack at
another Dataverse: the simulator is then not started, and the credentials, authority host and
`REQUESTS_CA_BUNDLE` must come from you as well.

Storage is reached by identity, as in Azure: Azurite runs over HTTPS (a certificate from the
simulator's CA) in OAuth mode, and the app and the host get the `AzureWebJobsStorage__queueServiceUri`
/ `__tableServiceUri` / `__credential=managedidentity` / `__clientId` settings Bicep writes, with tokens
from the simulated managed-identity endpoint. `DEVSTACK_STORAGE=connection-string` (environment or
local.settings.json) runs Azurite on plain HTTP with its account-key connection string instead, as
does pointing the stack at your own Dataverse (no simulator, so no managed-identity endpoint). The
account-key connection string, for Storage Explorer and the like, is in `.devstack/stack.json`.

With the simulator, the host plays App Service Authentication as Bicep configures it (bearer
tokens for the API's app registration, validated against the simulator's Entra ID; CORS for the
demo page's origin only), and the demo page of the Hunter UI path is served on its own origin
(`DEMO_PORT`, default 7180; devstack/ui.py): sign in as one of the printed test users and push.
The curl lines carry a token of the simulated operator app (both app roles). Function keys stay
generated and kept in `.devstack/keys.json` for the host's own key checks (no API route uses them).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from devstack import localca, trust, ui
from devstack.processes import (
    AzuriteTls,
    ProcessGroup,
    api_token,
    easy_auth_settings,
    identity_storage_settings,
    simulator_env,
)
from devstack.simulator.directory import OPERATOR_CLIENT_ID, OPERATOR_SECRET

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".devstack"
LOCAL_DEFAULTS = {
    "HUNTER_D365_ENABLED": "true",
    "HUNTER_D365_QUEUE": "d365-lead-push",
    "HUNTER_D365_RESULTS_QUEUE": "d365-lead-push-results",
    "HUNTER_D365_STATE_TABLE": "d365leadsync",
    "HUNTER_D365_CUSTOM_FIELDS": "true",
    "HUNTER_D365_DOMAIN_KEY": "true",
    # Seconds instead of minutes so retries can be watched locally; Azure uses 60/3600/10.
    "HUNTER_D365_RETRY_BASE_SECONDS": "2",
    "HUNTER_D365_RETRY_CAP_SECONDS": "60",
    "HUNTER_D365_RETRY_JITTER_SECONDS": "1",
    "HUNTER_D365_MAX_ATTEMPTS": "5",
}


def say(text: str) -> None:
    print(f"[devstack] {text}", flush=True)


def say_trust(ca: Path) -> None:
    """Say whether browsers trust the local CA the simulator's certificate comes from, and how to
    make them (`make trust`, docs/local-https.md) when they do not."""
    lacking = trust.missing(ca.read_bytes())
    browsers = [store for store in lacking if store != "system store"]
    if browsers:
        say(f"HTTPS        the local CA is not trusted yet by: {', '.join(browsers)}")
        say("             the demo page cannot sign in until you run `make trust` once and restart the browser")
        say("             (docs/local-https.md)")
    elif lacking:
        say(
            "HTTPS        browsers trust the local CA; the system store does not (curl: --cacert .devstack/ca-bundle.pem,"
        )
        say("             or `make trust` adds it there too; docs/local-https.md)")
    else:
        say(f"HTTPS        the local CA ({localca.ca_dir()}) is trusted")


def file_settings() -> dict[str, str]:
    path = ROOT / "local.settings.json"
    if not path.exists():
        return {}
    return {k: str(v) for k, v in json.loads(path.read_text()).get("Values", {}).items()}


def local_keys(configured: dict[str, str]) -> dict[str, str]:
    """The master and host function keys for the local host: configured, else kept in
    `.devstack/keys.json`, else made now (and kept)."""
    path = STATE / "keys.json"
    kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    keys = {
        name: configured.get(name) or kept.get(name) or secrets.token_urlsafe(32)
        for name in ("LOCAL_HOST_MASTER_KEY", "LOCAL_HOST_FUNCTION_KEY")
    }
    STATE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(keys))
    path.chmod(0o600)
    return keys


def main(argv: list[str]) -> int:
    if argv[:1] != ["up"]:
        print("usage: python -m devstack up", file=sys.stderr)
        return 2
    stack = ProcessGroup(STATE, preferred_ports=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        return run(stack, stopping)
    finally:
        say("stopping…")
        stack.stop()
        say("stopped")


def start_azurite(stack: ProcessGroup, env: dict[str, str], info: dict[str, Any] | None) -> str:
    """Start Azurite and point `env` at it; returns its account-key connection string.

    By identity, as in Azure, when the simulator runs (its managed-identity endpoint issues the
    storage tokens): Azurite over HTTPS in OAuth mode and the `AzureWebJobsStorage__*` settings Bicep
    writes. With a connection string (plain HTTP, account key) when the simulator does not run or
    `DEVSTACK_STORAGE=connection-string` asks for it."""
    if info is None or env.get("DEVSTACK_STORAGE", "identity") == "connection-string":
        env["AzureWebJobsStorage"], ports = stack.azurite()
        mode = "http, account key: AzureWebJobsStorage is a connection string"
    else:
        connection, ports = stack.azurite(AzuriteTls(Path(info["storage_cert"]), Path(info["storage_key"])))
        env.pop("AzureWebJobsStorage", None)  # the identity-based settings below, as in Azure
        env.update(identity_storage_settings(ports, info["managed_identity_client_id"]))
        mode = "https + OAuth: the app and the host by managed identity"
    say(f"Azurite      queue :{ports['queue']}  table :{ports['table']}  blob :{ports['blob']}  ({mode})")
    return env.get("AzureWebJobsStorage") or connection


def run(stack: ProcessGroup, stopping: threading.Event) -> int:
    # What the user set (local.settings.json, then the environment on top) wins over the defaults.
    configured = file_settings() | {
        k: v for k, v in os.environ.items() if k.startswith(("HUNTER_", "AzureWebJobs", "LOCAL_HOST_"))
    }
    env = dict(os.environ) | LOCAL_DEFAULTS | configured
    keys = local_keys(configured)
    env.update(keys)
    info: dict[str, Any] | None = None
    if "HUNTER_D365_BASE_URL" not in configured:
        info = stack.simulator()
        say(f"Simulator    {info['base_url']}  (Dataverse, Entra ID, Key Vault, managed identity; admin at /_admin)")
        say_trust(Path(info["ca_path"]))
        env.update(simulator_env(info))
        if "HUNTER_D365_CLIENT_SECRET" not in configured and "HUNTER_KEYVAULT_URL" not in configured:
            # Read the client secret from the simulated Key Vault through the simulated managed
            # identity, as the app does in Azure: no secret in any setting.
            env["HUNTER_KEYVAULT_URL"] = info["keyvault_url"]
            env["HUNTER_D365_CLIENT_SECRET_NAME"] = info["secret_name"]
    else:
        say(f"Dataverse    {configured['HUNTER_D365_BASE_URL']}  (yours; the simulator is not started)")
    storage_connection = ""
    if "AzureWebJobsStorage" not in configured or configured["AzureWebJobsStorage"] == "UseDevelopmentStorage=true":
        storage_connection = start_azurite(stack, env, info)
    demo_port = int(os.environ.get("DEMO_PORT", "7180"))
    demo_origin = f"http://localhost:{demo_port}"
    if info is not None:
        # App Service Authentication + CORS as Bicep configures them, against the simulator's Entra ID.
        env.update(easy_auth_settings(info, [demo_origin]))
    url, host = stack.host(env, port=int(os.environ["HOST_PORT"]) if "HOST_PORT" in os.environ else None)
    say(f"Functions    {url}/api  (logs: .devstack/host.log)")
    ready = requests.get(f"{url}/api/healthz/ready", timeout=30).json()
    say(f"Ready check  {json.dumps(ready['checks'])}")
    token = ""
    if info is not None:
        ui.serve(demo_port, lambda: ui.page_config(info, f"{url}/api", demo_origin))
        requests.post(
            f"{info['base_url']}/_admin/spa-redirects",
            json={"uri": f"{demo_origin}/"},
            timeout=10,
            verify=info["ca_bundle"],
        ).raise_for_status()
        token = api_token(info, OPERATOR_CLIENT_ID, OPERATOR_SECRET, info["ca_bundle"])
        users = "\n".join(
            f"  {user['username']:<24} {', '.join(user['roles']) or '(no role)':<26} {user['note']}"
            for user in info["test_users"]
        )
        say(f"Demo page    {demo_origin}/  (its own origin; the API's CORS allows it)")
        print(
            f"""
Open the demo page, sign in as a test user (no password), push a lead and watch its badge:
  {demo_origin}/
{users}
Call the API as a backend would (an operator app's token, roles Leads.Push + Leads.Replay; 1 hour):
  TOKEN={token}
  curl -s -X POST {url}/api/v1/d365/push-lead -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"domain": "acme.example", "company_name": "Acme", "final_score": 82}}'
  curl -s {url}/api/v1/d365/leads/acme.example -H "Authorization: Bearer $TOKEN"
  curl -s -X POST {url}/api/v1/d365/poison/replay -H "Authorization: Bearer $TOKEN"
Or push a handful and watch them sync:   make demo
Leads in the simulated Dataverse:        curl -sk {env["HUNTER_D365_BASE_URL"]}/_admin/leads
Ctrl-C stops everything.
""",
            flush=True,
        )
    else:
        say("Your own Dataverse: no simulated Entra ID, so no App Service Authentication locally and no demo page")
    stack_info = {
        "host_url": url,
        "dataverse_url": env["HUNTER_D365_BASE_URL"],
        "api_token": token,
        # `make demo` runs Hunter's results consumer on this queue.
        "results_queue": env.get("HUNTER_D365_RESULTS_QUEUE", "d365-lead-push-results"),
    }
    if info is not None:  # the simulator runs: `make demo` reads its admin API
        stack_info |= {"simulator_url": info["base_url"], "ca_bundle": info["ca_bundle"]}
    if storage_connection:  # for tools that need Azurite's account key (Storage Explorer, az storage)
        stack_info["storage_connection_string"] = storage_connection
    (STATE / "stack.json").write_text(json.dumps(stack_info))
    while not stopping.wait(1):
        if host.poll() is not None:
            say("the host exited; see .devstack/host.log")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
