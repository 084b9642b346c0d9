"""The end-to-end stack: the local Functions host (a real child process) on Azurite and the
simulator. Each test starts its own host with its own queue and table names and any settings it
needs; the host's log lines are kept so tests can assert on events. The host plays App Service
Authentication as Bicep configures it (`devstack.processes.easy_auth_settings`): `Stack.http`
sends a bearer token of Hunter's backend (client credentials, app role Leads.Push) on every call,
`Stack.replay_headers` one of the operator app (Leads.Replay). Tokens are minted by the simulator
in-process, so they add nothing to its request counters."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from secrets import token_urlsafe
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.processes import easy_auth_settings, free_port
from devstack.simulator import DEFAULT_SECRET, Simulator, SimulatorAdmin
from devstack.simulator.directory import BACKEND_CLIENT_ID, OPERATOR_CLIENT_ID
from tests.conftest import ROOT, Azurite

DEMO_ORIGIN = "http://localhost:7180"


class AppToken(requests.auth.AuthBase):
    """`Authorization: Bearer` with a new client-credentials token of `client_id` for the API on
    every request (one RS256 signature; immune to tests that shorten token lifetimes)."""

    def __init__(self, sim: Simulator, client_id: str) -> None:
        self.sim = sim
        self.client_id = client_id

    def token(self) -> str:
        return self.sim.api_app_token(self.client_id, lifetime=3599)[0]

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


class Stack:
    """A running host plus handles on everything around it."""

    def __init__(self, sim: Simulator, azurite: Azurite, env: dict[str, str]) -> None:
        self.sim = sim
        self.azurite = azurite
        self.env = env
        # The simulator's admin API: leads, counters, faults, limits, secrets.
        self.admin = SimulatorAdmin(sim.base_url, timeout=10)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs: list[dict[str, Any]] = []
        self.raw_logs: list[str] = []
        self.responses: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        # Every call through the helper carries a fresh token of Hunter's backend, as it will in Azure.
        self.http = requests.Session()
        self.app_auth = AppToken(sim, BACKEND_CLIENT_ID)
        self.http.auth = self.app_auth
        self.replay_auth = AppToken(sim, OPERATOR_CLIENT_ID)

    def start(self) -> Stack:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack.host", "--port", str(self.port), "--settings", "/nonexistent"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda: self._live(), timeout=30, what="host to start")
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.raw_logs.append(line)
            with contextlib.suppress(ValueError):
                self.logs.append(json.loads(line))

    def _live(self) -> bool:
        try:
            return requests.get(f"{self.url}/api/healthz/live", timeout=1).status_code == 200
        except requests.ConnectionError:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("host exited:\n" + "".join(self.raw_logs)) from None
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "condition", interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def push(self, lead: dict[str, Any], **kwargs: Any) -> requests.Response:
        response = self.http.post(f"{self.url}/api/v1/d365/push-lead", json=lead, timeout=30, **kwargs)
        self.responses.append(response.text)
        return response

    def push_batch(self, leads: list[dict[str, Any]]) -> requests.Response:
        response = self.http.post(f"{self.url}/api/v1/d365/push-leads", json={"leads": leads}, timeout=60)
        self.responses.append(response.text)
        return response

    def replay(self) -> requests.Response:
        response = requests.post(f"{self.url}/api/v1/d365/poison/replay", auth=self.replay_auth, timeout=60)
        self.responses.append(response.text)
        return response

    def status(self, domain: str) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/api/v1/d365/leads/{domain}", timeout=30)
        self.responses.append(response.text)
        return dict(response.json())

    def everything_said(self) -> str:
        """Every log line, recorded HTTP response, and message left in the poison and results queues."""
        queued: list[str] = []
        for name in (f"{self.queue_name}-poison", self.env["HUNTER_D365_RESULTS_QUEUE"]):
            for raw in self.peek(name):
                queued.append(raw)
                with contextlib.suppress(ValueError):
                    queued.append(base64.b64decode(raw, validate=True).decode("utf-8", "replace"))
        return "\n".join([*self.raw_logs, *self.responses, *queued])

    def wait_status(self, domain: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        return dict(
            self.wait_for(
                lambda: (s := self.status(domain)) and s["status"] in statuses and s, timeout, f"{domain} → {statuses}"
            )
        )

    def queue(self, name: str, encode: bool = True) -> QueueClient:
        options: dict[str, Any] = {"api_version": "2021-12-02"}
        if encode:
            options.update(
                message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy()
            )
        client = QueueClient.from_connection_string(self.azurite.connection_string, name, **options)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return client

    @property
    def queue_name(self) -> str:
        return self.env["HUNTER_D365_QUEUE"]

    def peek(self, name: str) -> list[str]:
        client = self.queue(name, encode=False)
        return [m.content for m in client.peek_messages(max_messages=32)]

    def queue_length(self, name: str) -> int:
        props = self.queue(name).get_queue_properties()
        return int(props.approximate_message_count or 0)

    def state_row(self, domain: str) -> dict[str, Any]:
        service = TableServiceClient.from_connection_string(self.azurite.connection_string)
        return dict(service.get_table_client(self.env["HUNTER_D365_STATE_TABLE"]).get_entity(domain, "lead"))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if entry.get("event") == name]


def base_env(sim: Simulator, azurite: Azurite, names: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HUNTER_", "AzureWebJobs", "IDENTITY_", "WEBSITE_AUTH", "LOCAL_HOST_"))
    }
    env.update(names)
    env.update(
        {
            # Storage by identity, as Bicep configures it in Azure: the app and the host get tokens for
            # https://storage.azure.com from the simulated managed-identity endpoint; Azurite checks them.
            **azurite.identity_settings,
            "IDENTITY_ENDPOINT": f"{sim.base_url}/msi/token",
            "IDENTITY_HEADER": sim.identity_header,
            "HUNTER_D365_ENABLED": "true",
            "HUNTER_D365_BASE_URL": sim.base_url,
            "HUNTER_D365_AUTHORITY_HOST": sim.base_url,
            "HUNTER_D365_TENANT_ID": sim.tenant_id,
            "HUNTER_D365_CLIENT_ID": sim.client_id,
            "HUNTER_D365_CLIENT_SECRET": DEFAULT_SECRET,
            "HUNTER_D365_RETRY_BASE_SECONDS": "1",
            "HUNTER_D365_RETRY_CAP_SECONDS": "8",
            "HUNTER_D365_RETRY_JITTER_SECONDS": "0",
            "HUNTER_D365_MAX_ATTEMPTS": "4",
            "HUNTER_D365_CLAIM_RETRY_SECONDS": "0.5",
            "HUNTER_D365_CLAIM_LEASE_SECONDS": "30",
            # A .NET TimeSpan, as the host binds it ("200" would be 200 days).
            "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.200",
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
            "REQUESTS_CA_BUNDLE": str(sim.bundle_path),
            "SSL_CERT_FILE": str(sim.bundle_path),
            "PYTHONPATH": str(ROOT),
            "LOCAL_HOST_MASTER_KEY": "local-master-" + token_urlsafe(16),
            "LOCAL_HOST_FUNCTION_KEY": "local-function-" + token_urlsafe(16),
            # App Service Authentication and CORS as Bicep configures them; the allowed origin is
            # the browser tests' demo page (tests/browser), other origins are refused.
            **easy_auth_settings(sim.info(), [DEMO_ORIGIN]),
        }
    )
    return env


@pytest.fixture
def start_stack(sim: Simulator, azurite: Azurite, names: dict[str, str]) -> Iterator[Callable[..., Stack]]:
    """`start_stack(**settings)` starts a host with the test's names and those settings."""
    stacks: list[Stack] = []

    def start(**overrides: str) -> Stack:
        env = base_env(sim, azurite, names)
        env.update(overrides)
        stack = Stack(sim, azurite, env).start()
        stacks.append(stack)
        return stack

    yield start
    # Every secret any host of this test could have held: the simulator's default, whatever the
    # test configured, and every secret the simulator currently accepts (after rotations).
    secrets = {DEFAULT_SECRET, *sim.accepted_secrets()}
    secrets |= {stack.env.get("HUNTER_D365_CLIENT_SECRET", "") for stack in stacks}
    secrets = {secret for secret in secrets if len(secret) >= 8}
    for stack in stacks:
        stack.stop()
        # Shown by pytest only when the test failed: the host's own account of what happened.
        print(f"--- host log ({stack.url}) ---")
        print("".join(stack.raw_logs[-80:]))
        said = stack.everything_said()
        leaked = [secret[:4] + "…" for secret in secrets if secret in said]
        assert not leaked, f"a secret appeared in logs, responses or queue messages: {leaked}"
