"""`python -m devstack up`: Azurite + the simulator + the local Functions host, on embedded
defaults, with a curl that pushes a lead. Ctrl-C stops everything.

Settings, highest first: the environment, `local.settings.json` Values, the embedded defaults
below. Setting `HUNTER_D365_BASE_URL` (environment or local.settings.json) points the stack at
another Dataverse: the simulator is then not started, and the credentials, authority host and
`REQUESTS_CA_BUNDLE` must come from you as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

from devstack.processes import (
    AZURITE_BINARY,
    azurite_command,
    azurite_connection_string,
    free_port,
    port_free,
    wait_for_port,
)

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


def pick_port(preferred: int) -> int:
    """`preferred` if it is free, else any free port."""
    return preferred if port_free(preferred) else free_port()


def wait_port(port: int, process: subprocess.Popen[Any], name: str, timeout: float = 60) -> None:
    try:
        wait_for_port(port, timeout, process, name)
    except (RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"[devstack] {exc}; see .devstack/{name}.log") from None


def file_settings() -> dict[str, str]:
    path = ROOT / "local.settings.json"
    if not path.exists():
        return {}
    return {k: str(v) for k, v in json.loads(path.read_text()).get("Values", {}).items()}


class Stack:
    def __init__(self) -> None:
        self.children: list[subprocess.Popen[Any]] = []

    def spawn(
        self, name: str, args: list[str], env: dict[str, str] | None = None, log: bool = True
    ) -> subprocess.Popen[Any]:
        out = open(STATE / f"{name}.log", "w") if log else subprocess.PIPE  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        self.children.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for process in self.children:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def azurite(self) -> str:
        if not AZURITE_BINARY.exists():
            raise SystemExit("[devstack] Azurite is missing: run `make setup` (or `npm install`) first")
        ports = {name: pick_port(default) for name, default in (("blob", 10000), ("queue", 10001), ("table", 10002))}
        data = STATE / "azurite"
        data.mkdir(parents=True, exist_ok=True)
        process = self.spawn("azurite", azurite_command(ports, data))
        for port in ports.values():
            wait_port(port, process, "azurite")
        say(
            f"Azurite      queue :{ports['queue']}  table :{ports['table']}  blob :{ports['blob']}  (data in .devstack/azurite)"
        )
        return azurite_connection_string(ports)

    def simulator(self) -> dict[str, Any]:
        port = pick_port(8443)
        info_path = STATE / "simulator.json"
        info_path.unlink(missing_ok=True)
        process = self.spawn(
            "simulator", [sys.executable, "-m", "devstack.simulator", "--port", str(port), "--state-dir", str(STATE)]
        )
        wait_port(port, process, "simulator")
        deadline = time.monotonic() + 10
        while not info_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        info: dict[str, Any] = json.loads(info_path.read_text())
        say(f"Simulator    {info['base_url']}  (Dataverse, Entra ID, Key Vault, managed identity; admin at /_admin)")
        return info


def main(argv: list[str]) -> int:
    if argv[:1] != ["up"]:
        print("usage: python -m devstack up", file=sys.stderr)
        return 2
    STATE.mkdir(exist_ok=True)
    stack = Stack()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        return run(stack, stopping)
    finally:
        say("stopping…")
        stack.stop()
        say("stopped")


def run(stack: Stack, stopping: threading.Event) -> int:
    # What the user set (local.settings.json, then the environment on top) wins over the defaults.
    configured = file_settings() | {k: v for k, v in os.environ.items() if k.startswith(("HUNTER_", "AzureWebJobs"))}
    env = dict(os.environ) | LOCAL_DEFAULTS | configured
    if "AzureWebJobsStorage" not in configured or configured["AzureWebJobsStorage"] == "UseDevelopmentStorage=true":
        env["AzureWebJobsStorage"] = stack.azurite()
    if "HUNTER_D365_BASE_URL" not in configured:
        info = stack.simulator()
        env.update(
            {
                "HUNTER_D365_BASE_URL": info["dataverse_url"],
                "HUNTER_D365_AUTHORITY_HOST": info["authority_host"],
                "HUNTER_D365_TENANT_ID": info["tenant_id"],
                "HUNTER_D365_CLIENT_ID": info["client_id"],
                "HUNTER_D365_AUTH_MODE": env.get("HUNTER_D365_AUTH_MODE", "client_secret"),
                "REQUESTS_CA_BUNDLE": info["ca_bundle"],
                "SSL_CERT_FILE": info["ca_bundle"],
                "IDENTITY_ENDPOINT": info["identity_endpoint"],
                "IDENTITY_HEADER": "local-identity-header",
            }
        )
        if "HUNTER_D365_CLIENT_SECRET" not in configured and "HUNTER_KEYVAULT_URL" not in configured:
            # Read the client secret from the simulated Key Vault through the simulated managed
            # identity, as the app does in Azure: no secret in any setting.
            env["HUNTER_KEYVAULT_URL"] = info["keyvault_url"]
            env["HUNTER_D365_CLIENT_SECRET_NAME"] = info["secret_name"]
    else:
        say(f"Dataverse    {configured['HUNTER_D365_BASE_URL']}  (yours; the simulator is not started)")
    port = pick_port(int(os.environ.get("HOST_PORT", "7071")))
    host = stack.spawn("host", [sys.executable, "-m", "devstack.host", "--port", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if host.poll() is not None:
            raise SystemExit(
                f"[devstack] the host exited; see .devstack/host.log:\n{(STATE / 'host.log').read_text()[-3000:]}"
            )
        try:
            if requests.get(f"{url}/api/healthz/live", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    say(f"Functions    {url}/api  (logs: .devstack/host.log)")
    ready = requests.get(f"{url}/api/healthz/ready", timeout=30).json()
    say(f"Ready check  {json.dumps(ready['checks'])}")
    print(
        f"""
Push a lead:
  curl -s -X POST {url}/api/v1/d365/push-lead -H 'Content-Type: application/json' \\
       -d '{{"domain": "acme.example", "company_name": "Acme", "final_score": 82}}'
Watch it:
  curl -s {url}/api/v1/d365/leads/acme.example
Or push a handful and watch them sync:   make demo
Leads in the simulated Dataverse:        curl -sk {env["HUNTER_D365_BASE_URL"]}/_admin/leads
Ctrl-C stops everything.
""",
        flush=True,
    )
    (STATE / "stack.json").write_text(json.dumps({"host_url": url, "dataverse_url": env["HUNTER_D365_BASE_URL"]}))
    while not stopping.wait(1):
        if host.poll() is not None:
            say("the host exited; see .devstack/host.log")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
