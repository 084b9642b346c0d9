"""The app indexed by Microsoft's own Python worker code (`azure-functions-runtime`, the library
the Python worker uses to index a v2 app), in a separate venv because that package declares
Python >= 3.13 (installed with --ignore-requires-python by `make setup`). The worker's loader
imports function_app.py, finds the one FunctionApp, and validates every function's bindings against
its parameters (Registry.add_indexed_function); this test then checks function and binding names
with the host's rules (azure-functions-host Utility.cs)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import ROOT

WORKER_PYTHON = ROOT / ".venv-worker" / "bin" / "python"
SCRIPT = r"""
import json, sys, types
from azure_functions_runtime import loader
from azure_functions_runtime.functions import Registry
from azure_functions_runtime.bindings import meta

meta.load_binding_registry()  # what the worker does at startup, before indexing

# The worker hands the runtime its gRPC protos; only these names are read while indexing
# (BindingInfo directions/data types, as numbered in the Functions host's FunctionRpc.proto).
class BindingInfo:
    inout, out, undefined = 2, 1, 0
    def __init__(self, **kwargs): self.__dict__.update(kwargs)
protos = types.SimpleNamespace(BindingInfo=BindingInfo, RpcFunctionMetadata=lambda **kw: kw)
functions = loader.index_function_app("function_app.py")
registry = Registry()
out = []
for function in functions:
    info = registry.add_indexed_function(function=function, protos=protos)
    out.append({"name": info.name, "bindings": [json.loads(b) for b in function.get_raw_bindings()]})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def indexed() -> list[dict[str, object]]:
    if not WORKER_PYTHON.exists():
        pytest.fail("the worker venv is missing: run `make setup`")
    done = subprocess.run(
        [str(WORKER_PYTHON), "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_worker_indexes_every_function(indexed: list[dict[str, object]]) -> None:
    names = {str(f["name"]) for f in indexed}
    assert names == {"push_lead", "push_leads", "lead_status", "replay", "live", "ready", "push_worker", "queue_depth"}


def test_names_follow_the_hosts_rules(indexed: list[dict[str, object]]) -> None:
    from devstack.host.settings import check_names

    for function in indexed:
        bindings = function["bindings"]
        assert isinstance(bindings, list)
        check_names(str(function["name"]), [str(b["name"]) for b in bindings])


def test_the_queue_trigger_is_bound_as_binary(indexed: list[dict[str, object]]) -> None:
    [worker] = [f for f in indexed if f["name"] == "push_worker"]
    bindings = worker["bindings"]
    assert isinstance(bindings, list)
    [trigger] = [b for b in bindings if b["type"] == "queueTrigger"]
    assert str(trigger["dataType"]).lower() == "binary"
    assert trigger["queueName"] == "%HUNTER_D365_QUEUE%"


def test_the_timer_takes_its_schedule_from_a_setting(indexed: list[dict[str, object]]) -> None:
    [timer] = [f for f in indexed if f["name"] == "queue_depth"]
    bindings = timer["bindings"]
    assert isinstance(bindings, list)
    [trigger] = bindings
    assert trigger["type"] == "timerTrigger"
    assert trigger["schedule"] == "%HUNTER_D365_QUEUE_DEPTH_SCHEDULE%"
    assert "runOnStartup" not in trigger  # never on startup in Azure: every new instance would run it
