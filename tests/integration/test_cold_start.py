"""Importing the app does no network: audited in a fresh interpreter (the benchmark times it)."""

from benchmarks.run import cold_start


def test_import_function_app_makes_no_network_call() -> None:
    figures = cold_start(runs=1)
    assert figures["network_calls"] == []


BUILD_SERVICES = """
import json, sys
events = []
NETWORK = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg"}
sys.addaudithook(lambda event, args: events.append(event) if event in NETWORK else None)
from shared.config import Settings
from shared.services import build_services
for storage in (
    {"AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=a2V5;"
     "QueueEndpoint=https://127.0.0.1:1/a;TableEndpoint=https://127.0.0.1:1/a"},
    {"AzureWebJobsStorage__queueServiceUri": "https://a.queue.core.windows.net",
     "AzureWebJobsStorage__tableServiceUri": "https://a.table.core.windows.net"},
):
    build_services(Settings.from_env({
        "HUNTER_D365_BASE_URL": "https://org.crm.dynamics.com", "HUNTER_D365_AUTH_MODE": "managed_identity",
        **storage,
    }))
print(json.dumps(sorted(set(events))))
"""


def test_building_the_services_makes_no_network_call() -> None:
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = subprocess.run([sys.executable, "-c", BUILD_SERVICES], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
