"""Storage unreachable from the start (a cold instance whose storage is down): every route answers
at once — 503 `storage_unavailable` saying nothing was enqueued or read, and `/healthz/ready`
reporting storage — instead of 500s or a hang; building the services touches no storage."""

from __future__ import annotations

from collections.abc import Callable

import requests

from devstack.processes import free_port
from tests.e2e.conftest import Stack


def test_a_cold_instance_with_storage_down_answers_503_on_every_route(start_stack: Callable[..., Stack]) -> None:
    closed = free_port()  # nothing listens here
    stack = start_stack(
        AzureWebJobsStorage__queueServiceUri=f"https://127.0.0.1:{closed}/devstoreaccount1",
        AzureWebJobsStorage__tableServiceUri=f"https://127.0.0.1:{closed}/devstoreaccount1",
    )
    push = stack.push({"domain": "storage-down.example"})
    assert push.status_code == 503 and push.json()["error"] == "storage_unavailable"
    assert "nothing was enqueued" in push.json()["message"]
    status = stack.http.get(f"{stack.url}/api/v1/d365/leads/storage-down.example", timeout=60)
    assert status.status_code == 503 and status.json()["error"] == "storage_unavailable"
    batch = stack.push_batch([{"domain": "storage-down-a.example"}, {"domain": "storage-down-b.example"}])
    assert batch.status_code == 503 and batch.json()["error"] == "storage_unavailable"
    ready = requests.get(f"{stack.url}/api/healthz/ready", timeout=60)
    assert ready.status_code == 503 and ready.json()["checks"]["storage"].startswith("error: ")
    assert ready.json()["checks"]["settings"] == "ok"
