"""`python -m devstack up`: Azurite + the simulator + the local Functions host, on embedded
defaults, with a token and curls that push a lead. Ctrl-C stops everything.

Settings, highest first: the environment, `local.settings.json` Values, the embedded defaults
below. Setting `HUNTER_D365_BASE_URL` (environment or local.settings.json) points the stack at
another Dataverse — your own sandbox org — together with `HUNTER_D365_AUTHORITY_HOST` (default
login.microsoftonline.com), `HUNTER_D365_TENANT_ID`, `HUNTER_D365_CLIENT_ID` and
`HUNTER_D365_CLIENT_SECRET`: only Dataverse moves (DESIGN §8). The simulator still runs and still
plays Entra ID sign-in for the local API (App Service Authentication, the demo page, the printed
token) and the managed-identity endpoint for storage; it is simply not the Dataverse. A
`REQUESTS_CA_BUNDLE` of yours is joined with the simulator's CA, so both are trusted.

Storage is reached by identity, as in Azure: Azurite runs over HTTPS (a certificate from the
simulator's CA) in OAuth mode, and the app and the host get the `AzureWebJobsStorage__queueServiceUri`
/ `__tableServiceUri` / `__credential=managedidentity` / `__clientId` settings Bicep writes, with tokens
from the simulated managed-identity endpoint. `DEVSTACK_STORAGE=connection-string` (environment or
local.settings.json) runs Azurite on plain HTTP with its account-key connection string instead. The
account-key connection string, for Storage Explorer and the like, is in `.devstack/stack.json`
(mode 0600: it also holds the operator token).

The host plays App Service Authentication as Bicep configures it (bearer tokens for the API's app
registration, validated against the simulator's Entra ID; CORS for the demo page's origin only),
and the demo page of the Hunter UI path is served on its own origin (`DEMO_PORT`, default 7180;
devstack/ui.py): sign in as one of the printed test users and push. The curl lines carry a token of
the simulated operator app (both app roles). Function keys stay generated and kept in
`.devstack/keys.json` for the host's own key checks (no API route uses them).

Ports: the simulator (8443), Azurite (10000-10002), the host (`HOST_PORT`, default 7071) and the
demo page (`DEMO_PORT`, default 7180) each fall back to a free port when their preferred one is
busy, and say so. `DEVSTACK_STATE_DIR` (default `.devstack`) moves the state directory and
`DEVSTACK_ANY_PORTS=1` skips the preferred ports (tests use both to run beside a `make run`).

Restarts: Azurite's data and the simulator's leads are both kept in the state directory
(`azurite/`, `simulator-leads.json`), so the app's sync records and the leads they point at stay
in step; `make clean` resets both together.
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


def state_dir() -> Path:
    """`DEVSTACK_STATE_DIR`, else `.devstack` in the repository."""
    return Path(os.environ.get("DEVSTACK_STATE_DIR") or ROOT / ".devstack").resolve()


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600) from the first byte on: it holds
    a token or a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file keeps its mode through O_CREAT
    with os.fdopen(descriptor, "w") as out:
        out.write(text)


def local_keys(configured: dict[str, str], state: Path) -> dict[str, str]:
    """The master and host function keys for the local host: configured, else kept in
    `<state>/keys.json`, else made now (and kept)."""
    path = state / "keys.json"
    kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    keys = {
        name: configured.get(name) or kept.get(name) or secrets.token_urlsafe(32)
        for name in ("LOCAL_HOST_MASTER_KEY", "LOCAL_HOST_FUNCTION_KEY")
    }
    write_private(path, json.dumps(keys))
    return keys


def joined_ca_bundle(info: dict[str, Any], yours: str | None, state: Path) -> str:
    """The simulator's bundle (system CAs + its CA), with your own `REQUESTS_CA_BUNDLE` appended
    when you set one (a proxy's CA, or whatever your org's Dataverse needs)."""
    if not yours:
        return str(info["ca_bundle"])
    path = state / "ca-bundle-joined.pem"
    path.write_bytes(Path(info["ca_bundle"]).read_bytes().rstrip(b"\n") + b"\n" + Path(yours).read_bytes())
    return str(path)


def main(argv: list[str]) -> int:
    if argv[:1] != ["up"]:
        print("usage: python -m devstack up", file=sys.stderr)
        return 2
    stack = ProcessGroup(state_dir(), preferred_ports=os.environ.get("DEVSTACK_ANY_PORTS") != "1")
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

    By identity, as in Azure (the simulator's managed-identity endpoint issues the storage tokens,
    whichever Dataverse the app talks to): Azurite over HTTPS in OAuth mode and the
    `AzureWebJobsStorage__*` settings Bicep writes. With a connection string (plain HTTP, account
    key) when `DEVSTACK_STORAGE=connection-string` asks for it."""
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
    state = stack.state_dir
    env.update(local_keys(configured, state))
    own_dataverse = "HUNTER_D365_BASE_URL" in configured
    # The simulator always runs: Entra ID sign-in for the local API and the managed-identity
    # endpoint for storage. With your own Dataverse it is only not the Dataverse.
    info = stack.simulator()
    if own_dataverse:
        say(f"Simulator    {info['base_url']}  (Entra ID sign-in for the local API, managed identity for storage)")
        say(f"Dataverse    {configured['HUNTER_D365_BASE_URL']}  (yours: tokens from {yours_authority(env)})")
        # Your REQUESTS_CA_BUNDLE (environment or local.settings.json), joined with the simulator's CA.
        bundle = joined_ca_bundle(info, env.get("REQUESTS_CA_BUNDLE"), state)
        env.update(
            REQUESTS_CA_BUNDLE=bundle,
            SSL_CERT_FILE=bundle,
            IDENTITY_ENDPOINT=info["identity_endpoint"],
            IDENTITY_HEADER="local-identity-header",
        )
    else:
        say(f"Simulator    {info['base_url']}  (Dataverse, Entra ID, Key Vault, managed identity; admin at /_admin)")
        say_trust(Path(info["ca_path"]))
        say(
            f"Kept         {info.get('leads_kept', 0)} lead(s) in the simulated Dataverse and the sync records in "
            f"Azurite from the last run ({state}; `make clean` resets both)"
        )
        env.update(simulator_env(info))
        if "HUNTER_D365_CLIENT_SECRET" not in configured and "HUNTER_KEYVAULT_URL" not in configured:
            # Read the client secret from the simulated Key Vault through the simulated managed
            # identity, as the app does in Azure: no secret in any setting.
            env["HUNTER_KEYVAULT_URL"] = info["keyvault_url"]
            env["HUNTER_D365_CLIENT_SECRET_NAME"] = info["secret_name"]
    storage_connection = ""
    if "AzureWebJobsStorage" not in configured or configured["AzureWebJobsStorage"] == "UseDevelopmentStorage=true":
        storage_connection = start_azurite(stack, env, info)
    demo_port = stack.port(int(os.environ.get("DEMO_PORT", "7180")), "demo page, DEMO_PORT", "DEMO_PORT" in os.environ)
    demo_origin = f"http://localhost:{demo_port}"
    # App Service Authentication + CORS as Bicep configures them, against the simulator's Entra ID.
    env.update(easy_auth_settings(info, [demo_origin]))
    host_port = stack.port(
        int(os.environ.get("HOST_PORT", "7071")), "Functions host, HOST_PORT", "HOST_PORT" in os.environ
    )
    url, host = stack.host(env, port=host_port)
    say(f"Functions    {url}/api  (logs: {state / 'host.log'})")
    say(f"Ready check  {readiness(url)}")
    ui.serve(demo_port, lambda: ui.page_config(info, f"{url}/api", demo_origin))
    requests.post(
        f"{info['base_url']}/_admin/spa-redirects",
        json={"uri": f"{demo_origin}/"},
        timeout=10,
        verify=info["ca_bundle"],
    ).raise_for_status()
    token = api_token(info, OPERATOR_CLIENT_ID, OPERATOR_SECRET, info["ca_bundle"])
    stack_info = {
        "host_url": url,
        "dataverse_url": env["HUNTER_D365_BASE_URL"],
        "dataverse_simulated": not own_dataverse,
        "demo_url": f"{demo_origin}/",
        "api_token": token,
        # `make demo` runs Hunter's results consumer on this queue.
        "results_queue": env.get("HUNTER_D365_RESULTS_QUEUE", "d365-lead-push-results"),
        # `make demo` reads the simulator's admin API (its leads, when it is the Dataverse).
        "simulator_url": info["base_url"],
        "ca_bundle": env.get("REQUESTS_CA_BUNDLE", info["ca_bundle"]),
    }
    if storage_connection:  # for tools that need Azurite's account key (Storage Explorer, az storage)
        stack_info["storage_connection_string"] = storage_connection
    write_private(state / "stack.json", json.dumps(stack_info))
    print(banner(info, url, demo_origin, token, env["HUNTER_D365_BASE_URL"], own_dataverse, state), flush=True)
    while not stopping.wait(1):
        if host.poll() is not None:
            say(f"the host exited; see {state / 'host.log'}")
            return 1
    return 0


def yours_authority(env: dict[str, str]) -> str:
    host = env.get("HUNTER_D365_AUTHORITY_HOST", "https://login.microsoftonline.com").rstrip("/")
    return f"{host}/{env.get('HUNTER_D365_TENANT_ID', '<HUNTER_D365_TENANT_ID unset>')}"


def readiness(url: str) -> str:
    """`/api/healthz/ready`'s checks in one line; whatever it answers (even not JSON, or nothing),
    `make run` reports it and goes on."""
    try:
        response = requests.get(f"{url}/api/healthz/ready", timeout=60)
    except requests.RequestException as exc:
        return f"no answer ({type(exc).__name__}); the stack runs on, see the host log"
    try:
        checks = response.json()["checks"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}, not the JSON expected: {response.text[:200]!r}; see the host log"
    verdict = "ready" if response.status_code == 200 else f"NOT READY (HTTP {response.status_code}); the stack runs on"
    return f"{verdict}  {json.dumps(checks)}"


def banner(
    info: dict[str, Any], url: str, origin: str, token: str, dataverse: str, own_dataverse: bool, state: Path
) -> str:
    """What `make run` prints once the stack is up. Every command in it works as printed (with
    the simulator as Dataverse or with yours; tests/e2e/test_printed_commands.py runs them)."""
    users = "\n".join(
        f"  {user['username']:<24} {', '.join(user['roles']) or '(no role)':<26} {user['note']}"
        for user in info["test_users"]
    )
    if own_dataverse:
        leads = (
            f"Leads land in your Dataverse:           {dataverse.rstrip('/')}/main.aspx?pagetype=entitylist&etn=lead"
        )
    else:
        leads = f"Leads in the simulated Dataverse:       curl -s --cacert {info['ca_bundle']} {info['base_url']}/_admin/leads"
    return f"""
Open the demo page, sign in as a test user (no password), push a lead and watch its badge:
  {origin}/
{users}
Call the API as a backend would (an operator app's token, roles Leads.Push + Leads.Replay; 1 hour;
also in {state / "stack.json"}, readable by you only):
  TOKEN={token}
  curl -s -X POST {url}/api/v1/d365/push-lead -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"domain": "acme.example", "company_name": "Acme", "final_score": 82}}'
  curl -s {url}/api/v1/d365/leads/acme.example -H "Authorization: Bearer $TOKEN"
  curl -s -X POST {url}/api/v1/d365/poison/replay -H "Authorization: Bearer $TOKEN"
Or push the demo page's sample leads and watch them sync:   make demo
{leads}
Ctrl-C stops everything.
"""


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
