"""`make run`'s stack as a person meets it: `python -m devstack up` as a child process (its own
state directory and free ports, so it runs beside anyone's `make run`), then what it prints.

- Your own Dataverse: a second simulator, started on its own as `python -m devstack.simulator`
  with its own CA, stands in for a real org; with `HUNTER_D365_BASE_URL` & co. pointing at it, the
  stack still signs the API's callers in, its printed token pushes, `make demo` works, and the
  leads land in the second simulator only.
- Every command the banner prints runs as printed (bash + curl), including a POST without a body
  (HTTP/1.1, no length: an empty body, as Kestrel) and, with HTTP/1.0, Kestrel's 411.
- A restart keeps the simulator's leads beside Azurite's records, and `make demo` after it
  reports "already there", never a lead the simulator does not hold.
- Busy preferred ports fall back and are printed; an unreachable Dataverse sign-in is reported
  as not ready and the stack goes on.
- `stack.json` and `keys.json` are 0600.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.processes import free_port, wait_for_port
from devstack.simulator import DEFAULT_SECRET, SimulatorAdmin
from devstack.ui import SAMPLE_LEADS
from tests.conftest import ROOT

# Settings a developer's shell (or this test session) may hold that would steer the child stack.
STEERING = ("HUNTER_", "AzureWebJobs", "LOCAL_HOST_", "IDENTITY_", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "DEMO_PORT")
STEERING_EXACT = {"HOST_PORT", "DEVSTACK_STORAGE"}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(STEERING) and k not in STEERING_EXACT}
    return env | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"} | extra


class Up:
    """One `python -m devstack up`: its output, its stack.json."""

    def __init__(self, state: Path, env: dict[str, str]) -> None:
        self.state = state
        self.log = state.parent / f"{state.name}-up-{time.monotonic_ns()}.log"
        state.mkdir(parents=True, exist_ok=True)
        (state / "stack.json").unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "up"],
            cwd=ROOT,
            env=clean_env(DEVSTACK_STATE_DIR=str(state), **env),
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while "Ctrl-C stops everything." not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"devstack up did not come up:\n{self.output}")
            time.sleep(0.3)
        self.info: dict[str, Any] = json.loads((state / "stack.json").read_text())

    @property
    def output(self) -> str:
        return self.log.read_text()

    def banner_commands(self) -> list[str]:
        """The shell lines of the banner: TOKEN=…, each curl (joined over its continuation)."""
        text = self.output.replace("\\\n", " ")
        lines = [line.strip() for line in text.splitlines()]
        return [
            line if line.startswith("TOKEN=") else line[line.index("curl ") :]
            for line in lines
            if "curl " in line or line.startswith("TOKEN=")
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert "Traceback" not in self.output, self.output


@pytest.fixture
def devstack_up() -> Iterator[Callable[..., Up]]:
    # Not under pytest's tmp_path (0700 under root): `make demo`'s PostgreSQL runs as `nobody` when
    # the tests run as root, and keeps Hunter's database in the state directory.
    base = Path(tempfile.mkdtemp(prefix="devstack-e2e-"))
    base.chmod(0o755)
    started: list[Up] = []

    def up(state: str = "state", **env: str) -> Up:
        stack = Up(base / state, {"DEVSTACK_ANY_PORTS": "1", **env})
        started.append(stack)
        return stack

    yield up
    for stack in started:
        stack.stop()
    shutil.rmtree(base, ignore_errors=True)


def demo(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--timeout", "90", *args],
        cwd=ROOT,
        env=clean_env(DEVSTACK_STATE_DIR=str(state)),
        capture_output=True,
        text=True,
        timeout=180,
    )


def private(path: Path) -> bool:
    return path.stat().st_mode & 0o777 == 0o600


def wait_synced(url: str, token: str, domain: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(
            f"{url}/api/v1/d365/leads/{domain}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        if state["status"] in ("synced", "error"):
            return dict(state)
        time.sleep(0.3)
    raise AssertionError(f"{domain} did not sync: {state}")


@pytest.fixture
def other_org(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A second simulator, started on its own (its own port, state directory and CA): a real org."""
    state = tmp_path / "other-org"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.simulator", "--port", str(port), "--state-dir", str(state)],
        cwd=ROOT,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30, process, "second simulator")
        deadline = time.monotonic() + 10
        while not (state / "simulator.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield json.loads((state / "simulator.json").read_text())
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_your_own_dataverse_the_printed_token_pushes_and_the_lead_lands_there(
    devstack_up: Callable[..., Up], other_org: dict[str, Any]
) -> None:
    stack = devstack_up(
        HUNTER_D365_BASE_URL=other_org["dataverse_url"],
        HUNTER_D365_AUTHORITY_HOST=other_org["authority_host"],
        HUNTER_D365_TENANT_ID=other_org["tenant_id"],
        HUNTER_D365_CLIENT_ID=other_org["client_id"],
        HUNTER_D365_CLIENT_SECRET=DEFAULT_SECRET,
        REQUESTS_CA_BUNDLE=other_org["ca_bundle"],  # the org's CA; the stack adds its simulator's
    )
    assert "Ready check  ready" in stack.output
    assert other_org["base_url"] not in stack.info["simulator_url"] and not stack.info["dataverse_simulated"]
    assert "_admin" not in "\n".join(stack.banner_commands())  # nothing that only works with the simulator
    token = stack.info["api_token"]
    assert f"TOKEN={token}" in stack.output
    pushed = requests.post(
        f"{stack.info['host_url']}/api/v1/d365/push-lead",
        headers={"Authorization": f"Bearer {token}"},
        json={"domain": "own-org.example", "company_name": "Own Org"},
        timeout=30,
    )
    assert pushed.status_code == 202, pushed.text
    state = wait_synced(stack.info["host_url"], token, "own-org.example")
    assert state["status"] == "synced" and state["d365_url"].startswith(other_org["base_url"])
    org = SimulatorAdmin(other_org["base_url"], verify=other_org["ca_bundle"], timeout=10)
    assert {lead["hnt_domain"]: lead["leadid"] for lead in org.leads()} == {"own-org.example": state["d365_lead_id"]}
    local = SimulatorAdmin(stack.info["simulator_url"], verify=stack.info["ca_bundle"], timeout=10)
    assert local.leads() == []  # the stack's simulator signs people in; it is not the Dataverse here

    shown = demo(stack.state, "--no-hunter-db")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "KeyError" not in shown.stderr and "deliberately invalid" in shown.stdout
    assert {lead["hnt_domain"] for lead in org.leads()} == {"own-org.example", *(s["domain"] for s in SAMPLE_LEADS)}
    assert private(stack.state / "stack.json") and private(stack.state / "keys.json")


def test_every_printed_command_works_as_printed(devstack_up: Callable[..., Up]) -> None:
    stack = devstack_up()
    commands = stack.banner_commands()
    assert len(commands) == 5 and commands[0].startswith("TOKEN=")
    script = "set -eu\n" + "\n".join(f"{line}\necho" for line in commands)
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    answers = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    push, status, replay, leads = answers
    assert push["status"] == "queued" and push["domain"] == "acme.example"
    assert status["domain"] == "acme.example" and status["status"] in ("queued", "syncing", "synced")
    assert "moved" in json.dumps(replay) or isinstance(replay, dict)
    assert isinstance(leads, list | dict)
    token, url = stack.info["api_token"], stack.info["host_url"]
    # No body and no length (curl -X POST without -d): HTTP/1.1 → an empty body, as Kestrel; the
    # app answers its JSON 400. HTTP/1.0 (curl -0) → Kestrel's 411 Length Required.
    auth = f"Authorization: Bearer {token}"
    empty = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{url}/api/v1/d365/push-lead", "-H", auth, "-w", "\n%{http_code}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    body, code = empty.stdout.rsplit("\n", 1)
    assert code == "400" and json.loads(body)["error"] == "invalid_body", empty.stdout
    old = subprocess.run(
        [
            "curl",
            "-s",
            "-0",
            "-X",
            "POST",
            f"{url}/api/v1/d365/push-lead",
            "-H",
            auth,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert old.stdout == "411"
    assert wait_synced(url, token, "acme.example")["status"] == "synced"


def test_a_restart_keeps_the_simulators_leads_and_make_demo_reports_only_what_it_holds(
    devstack_up: Callable[..., Up],
) -> None:
    first = devstack_up()
    shown = demo(first.state)  # with Hunter's database and results consumer, as `make demo`
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.count(" created ") == len(SAMPLE_LEADS) and "deliberately invalid" in shown.stdout
    assert "{" not in shown.stderr  # no raw JSON log lines without --verbose
    assert "'applied': 3" in shown.stdout and "'unknown': 0" in shown.stdout  # Hunter's rows, all known
    first.stop()

    second = devstack_up()
    assert f"Kept         {len(SAMPLE_LEADS)} lead(s)" in second.output
    again = demo(second.state, "--no-hunter-db")
    assert again.returncode == 0, again.stdout + again.stderr
    assert " created " not in again.stdout and again.stdout.count("already there") == len(SAMPLE_LEADS)
    assert "NOT HELD" not in again.stdout and f"holds {len(SAMPLE_LEADS)} lead(s)" in again.stdout

    # The simulator's leads lost behind the stack's back: the demo says so instead of linking to them.
    second.stop()
    (second.state / "simulator-leads.json").unlink()
    third = devstack_up()
    lost = demo(third.state, "--no-hunter-db")
    assert lost.returncode == 1 and "NOT HELD" in lost.stdout


def test_busy_preferred_ports_fall_back_and_an_unreachable_sign_in_is_reported(
    devstack_up: Callable[..., Up],
) -> None:
    with socket.socket() as demo_busy, socket.socket() as host_busy:
        for held in (demo_busy, host_busy):
            held.bind(("127.0.0.1", 0))
            held.listen()
        demo_port, host_port = demo_busy.getsockname()[1], host_busy.getsockname()[1]
        stack = devstack_up(
            DEMO_PORT=str(demo_port),
            HOST_PORT=str(host_port),
            # Your own org, whose sign-in host does not resolve (a typo, a VPN that is down).
            HUNTER_D365_BASE_URL="https://org.nowhere.invalid",
            HUNTER_D365_AUTHORITY_HOST="https://login.nowhere.invalid",
            HUNTER_D365_TENANT_ID="00000000-0000-4000-8000-000000000001",
            HUNTER_D365_CLIENT_ID="00000000-0000-4000-8000-000000000002",
            HUNTER_D365_CLIENT_SECRET="not-a-real-secret",
        )
        out = stack.output
        assert f"port {demo_port} (demo page, DEMO_PORT) is busy: using" in out
        assert f"port {host_port} (Functions host, HOST_PORT) is busy: using" in out
        used = int(re.search(rf"port {host_port} .*? using (\d+)", out).group(1))  # type: ignore[union-attr]
        assert stack.info["host_url"] == f"http://127.0.0.1:{used}"
        assert re.search(r"demo page, DEMO_PORT\) is busy: using (\d+)", out)
        demo_url = stack.info["demo_url"]
        assert requests.get(demo_url, timeout=10).status_code == 200 and demo_url in out
    assert "NOT READY (HTTP 503)" in out and '"dataverse_auth": "error: unreachable"' in out
    assert requests.get(f"{stack.info['host_url']}/api/healthz/live", timeout=10).status_code == 200
