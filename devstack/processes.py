"""Helpers the local stack and the tests share for child processes: free ports, waiting for a
port, waiting for Ctrl-C/SIGTERM, and how to start Azurite and reach it."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BINARY = ROOT / "node_modules" / ".bin" / "azurite"
# Azurite's well-known development account key (public, the same in every Azurite).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


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


def azurite_command(ports: dict[str, int], location: Path | None = None) -> list[str]:
    """Azurite's command line: no telemetry, any API version, the given ports; in memory
    unless `location` holds its data."""
    storage = ["--location", str(location)] if location else ["--inMemoryPersistence"]
    return [
        str(AZURITE_BINARY),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        *storage,
        "--blobPort",
        str(ports["blob"]),
        "--queuePort",
        str(ports["queue"]),
        "--tablePort",
        str(ports["table"]),
    ]


def azurite_connection_string(ports: dict[str, int]) -> str:
    """The connection string of an Azurite listening on `ports` (blob, queue, table)."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{ports['blob']}/devstoreaccount1;"
        f"QueueEndpoint=http://127.0.0.1:{ports['queue']}/devstoreaccount1;"
        f"TableEndpoint=http://127.0.0.1:{ports['table']}/devstoreaccount1;"
    )
