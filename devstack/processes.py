"""Helpers the local stack and the tests share for child processes: free ports, waiting for a
port, waiting for Ctrl-C/SIGTERM, and how to start Azurite and reach it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BINARY = ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account and key (public, the same in every Azurite).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass(frozen=True)
class AzuriteTls:
    """Azurite over HTTPS in OAuth mode.

    What Azurite 3.37.0 (package.json) checks in a bearer token, read from
    `node_modules/azurite/dist/src/queue/authentication/QueueTokenAuthenticator.js` (and the table
    twin `table/authentication/TableTokenAuthenticator.js`), `authenticateBasic`: the request must be
    HTTPS; the token must decode as a JWT (the signature is not checked in `basic`); `nbf`, `exp`
    and `iat` must be present and now within [nbf, exp]; `iss` must start with one of
    `VALID_ISSUE_PREFIXES` (`common/utils/constants.js`: https://sts.windows.net/,
    https://sts.microsoftonline.de/, https://sts.chinacloudapi.cn/, https://sts.windows-ppe.net);
    `aud` must fully match one of `VALID_QUEUE_AUDIENCES` / `VALID_TABLE_AUDIENCES`
    (`queue/utils/constants.js`, `table/utils/constants.js`): https://storage.azure.com[/], the
    storage app id e406a681-f3d4-42a8-90b6-c2b029497af1, or https://<account>.queue|table.core.windows.net[/]
    (and the sovereign clouds). A failed check is 403 AuthenticationFailed with the reason in
    AuthenticationErrorDetail; a request with no credential is 403 AuthenticationFailed too (the
    authenticators run in turn, `queue/QueueRequestListenerFactory.js`). The account key (shared key)
    and SAS keep working alongside."""

    cert: Path
    key: Path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_free(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def wait_for_port(
    port: int, timeout: float = 30.0, process: subprocess.Popen[Any] | None = None, name: str = ""
) -> None:
    """Block until something listens on 127.0.0.1:`port`.

    Raises:
        RuntimeError: `process` exited first.
        TimeoutError: nothing listened within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name or 'process'} exited with code {process.returncode}")
        if not port_free(port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name or 'nothing'} listening on 127.0.0.1:{port} after {timeout:.0f}s")


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


def azurite_command(ports: dict[str, int], location: Path | None = None, tls: AzuriteTls | None = None) -> list[str]:
    """Azurite's command line: no telemetry, any API version, the given ports; in memory unless
    `location` holds its data. With `tls`, HTTPS with that certificate and OAuth mode `basic`."""
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    secure = ["--cert", str(tls.cert), "--key", str(tls.key), "--oauth", "basic"] if tls else []
    return [
        str(AZURITE_BINARY),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        *storage,
        *secure,
        "--blobPort",
        str(ports["blob"]),
        "--queuePort",
        str(ports["queue"]),
        "--tablePort",
        str(ports["table"]),
    ]


def azurite_endpoints(ports: dict[str, int], https: bool) -> dict[str, str]:
    """The blob, queue and table endpoints of an Azurite on `ports` (path-style, account in the path)."""
    scheme = "https" if https else "http"
    return {name: f"{scheme}://127.0.0.1:{ports[name]}/{AZURITE_ACCOUNT}" for name in ("blob", "queue", "table")}


def azurite_connection_string(ports: dict[str, int], https: bool = False) -> str:
    """The account-key connection string of an Azurite listening on `ports` (blob, queue, table)."""
    endpoints = azurite_endpoints(ports, https)
    return (
        f"DefaultEndpointsProtocol={'https' if https else 'http'};AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoints['blob']};QueueEndpoint={endpoints['queue']};TableEndpoint={endpoints['table']};"
    )


def identity_storage_settings(ports: dict[str, int], client_id: str) -> dict[str, str]:
    """The identity-based `AzureWebJobsStorage` settings Bicep writes (infra/app/api.bicep), pointed at
    an Azurite on `ports` in OAuth mode: service URIs, `__credential=managedidentity`, `__clientId`."""
    endpoints = azurite_endpoints(ports, https=True)
    return {
        "AzureWebJobsStorage__queueServiceUri": endpoints["queue"],
        "AzureWebJobsStorage__tableServiceUri": endpoints["table"],
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": client_id,
    }


def simulator_env(info: dict[str, Any]) -> dict[str, str]:
    """App settings that point the app at a running simulator (from its `info()`)."""
    return {
        "HUNTER_D365_BASE_URL": info["dataverse_url"],
        "HUNTER_D365_AUTHORITY_HOST": info["authority_host"],
        "HUNTER_D365_TENANT_ID": info["tenant_id"],
        "HUNTER_D365_CLIENT_ID": info["client_id"],
        "REQUESTS_CA_BUNDLE": info["ca_bundle"],
        "SSL_CERT_FILE": info["ca_bundle"],
        "IDENTITY_ENDPOINT": info["identity_endpoint"],
        "IDENTITY_HEADER": "local-identity-header",
    }


def easy_auth_settings(info: dict[str, Any], cors_origins: list[str]) -> dict[str, str]:
    """The local host's App Service Authentication and CORS settings for a running simulator: the
    same `authsettingsV2` properties `infra/app/api.bicep` deploys (issuer, the API's client id,
    audiences, allowed client applications, Return401, the health routes excluded) and the CORS
    origins of its `allowedOrigins` parameter."""
    settings = {
        "platform": {"enabled": True},
        "globalValidation": {
            "requireAuthentication": True,
            "unauthenticatedClientAction": "Return401",
            "excludedPaths": ["/api/healthz/live", "/api/healthz/ready"],
        },
        "identityProviders": {
            "azureActiveDirectory": {
                "enabled": True,
                "registration": {"openIdIssuer": info["openid_issuer"], "clientId": info["api_client_id"]},
                "validation": {
                    "allowedAudiences": [info["api_scope"].rsplit("/", 1)[0]],
                    "defaultAuthorizationPolicy": {
                        "allowedApplications": [
                            info["spa_client_id"],
                            info["backend_client_id"],
                            info["operator_client_id"],
                        ]
                    },
                },
            }
        },
        "login": {"tokenStore": {"enabled": False}},
    }
    return {
        "LOCAL_HOST_AUTH_SETTINGS_V2": json.dumps(settings),
        "LOCAL_HOST_CORS_ALLOWED_ORIGINS": ",".join(cors_origins),
    }


def api_token(info: dict[str, Any], client_id: str, secret: str, verify: str | bool = True) -> str:
    """A client-credentials token for the API (`api://<api>/.default`) from the simulator's Entra
    ID, as Hunter's backend gets one: its app roles are in `roles`.

    Raises:
        requests.HTTPError: the token endpoint refused (unknown client, wrong secret).
    """
    import requests

    response = requests.post(
        f"{info['authority']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "scope": f"{info['api_scope'].rsplit('/', 1)[0]}/.default",
        },
        timeout=30,
        verify=verify,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


class ProcessGroup:
    """Child processes of the local stack (Azurite, the simulator, hosts), logged to `state_dir`
    and stopped together."""

    def __init__(self, state_dir: Path, preferred_ports: bool = False) -> None:
        self.state_dir = state_dir
        self.preferred_ports = preferred_ports
        self.children: list[subprocess.Popen[Any]] = []
        state_dir.mkdir(parents=True, exist_ok=True)

    def port(self, preferred: int, name: str = "", explicit: bool = False) -> int:
        """`preferred` when the group prefers its ports (or the user `explicit`ly asked for it)
        and it is free, else any free port; a busy preferred port is said, with the one used."""
        if not (self.preferred_ports or explicit):
            return free_port()
        if port_free(preferred):
            return preferred
        chosen = free_port()
        print(f"[devstack] port {preferred} ({name or 'preferred'}) is busy: using {chosen} instead", flush=True)
        return chosen

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
        """Start `args` with output to `<state_dir>/<name>.log`."""
        log = open(self.state_dir / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the child
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        self.children.append(process)
        return process

    def wait_port(self, port: int, process: subprocess.Popen[Any], name: str, timeout: float = 60) -> None:
        """`wait_for_port`, failing with a pointer to the child's log."""
        try:
            wait_for_port(port, timeout, process, name)
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"{exc}; see {self.state_dir / name}.log") from None

    def azurite(self, tls: AzuriteTls | None = None) -> tuple[str, dict[str, int]]:
        """Start Azurite (data under the state dir), over HTTPS in OAuth mode when `tls` is given;
        returns (its account-key connection string, ports)."""
        if not AZURITE_BINARY.exists():
            raise SystemExit("Azurite is missing: run `make setup` (or `npm install`) first")
        ports = {
            name: self.port(default, f"Azurite {name}")
            for name, default in (("blob", 10000), ("queue", 10001), ("table", 10002))
        }
        data = self.state_dir / "azurite"
        data.mkdir(parents=True, exist_ok=True)
        process = self.spawn("azurite", azurite_command(ports, data, tls))
        for port in ports.values():
            self.wait_port(port, process, "azurite")
        return azurite_connection_string(ports, https=tls is not None), ports

    def simulator(self) -> dict[str, Any]:
        """Start the simulator as its own process; returns its `info()`."""
        port = self.port(8443, "simulator")
        info_path = self.state_dir / "simulator.json"
        info_path.unlink(missing_ok=True)
        process = self.spawn(
            "simulator",
            [sys.executable, "-m", "devstack.simulator", "--port", str(port), "--state-dir", str(self.state_dir)],
        )
        self.wait_port(port, process, "simulator")
        deadline = time.monotonic() + 10
        while not info_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        info: dict[str, Any] = json.loads(info_path.read_text())
        return info

    def host(
        self, env: dict[str, str], name: str = "host", port: int | None = None
    ) -> tuple[str, subprocess.Popen[Any]]:
        """Start a local Functions host with `env`; returns (its URL, the process) once it is live."""
        port = port or self.port(7071, "Functions host")
        process = self.spawn(name, [sys.executable, "-m", "devstack.host", "--port", str(port)], env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                log = (self.state_dir / f"{name}.log").read_text()[-3000:]
                raise SystemExit(f"the host exited; see {self.state_dir / name}.log:\n{log}")
            try:
                with urllib.request.urlopen(f"{url}/api/healthz/live", timeout=1):  # noqa: S310 - loopback
                    return url, process
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"the host did not answer on {url} within 60 s")

    def stop(self) -> None:
        """Terminate every child (newest first), killing what does not exit."""
        for process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        for process in self.children:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
