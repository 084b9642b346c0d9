"""What the local host reads from host.json and app settings, validated the way the real host
validates it. Each rule names the Microsoft source it imitates; `docs/local-host.md` has the table.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

# QueuesOptions (azure-sdk-for-net, sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Common/
# src/Shared/Queues/QueuesOptions.cs): BatchSize 16, MaxDequeueCount 5, VisibilityTimeout 0,
# MessageEncoding base64, NewBatchThreshold unset (then BatchSize/2 × processor count).
# MaxPollingInterval defaults to 1 min (QueuePollingIntervals.DefaultMaximum); `func start` runs in
# the Development environment where the host uses 2 s, which is what a local host should do.
QUEUE_DEFAULTS: dict[str, Any] = {
    "batchSize": 16,
    "newBatchThreshold": None,
    "maxPollingInterval": "00:00:02",
    "visibilityTimeout": "00:00:00",
    "maxDequeueCount": 5,
    "messageEncoding": "base64",
}
MAX_BATCH_SIZE = 32  # QueuesOptions.MaxBatchSize; a larger value throws ArgumentOutOfRangeException
MIN_POLLING_MS = 100  # QueuePollingIntervals.Minimum
# ScriptJobHostOptionsSetup.cs (azure-functions-host): functionTimeout default 30 min (5 min only
# on the old Consumption plan, not Flex), minimum 1 s; -1 means unbounded on plans that allow it.
DEFAULT_FUNCTION_TIMEOUT_MS = 30 * 60 * 1000
MIN_FUNCTION_TIMEOUT_MS = 1000
# Utility.cs (azure-functions-host): the names the host accepts.
FUNCTION_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,127}$(?<!^host$)", re.IGNORECASE)
BINDING_NAME = re.compile(r"^([a-zA-Z][a-zA-Z0-9]{0,127}|\$return)$")


class HostConfigError(ValueError):
    """host.json or an app setting that the real host would refuse to start with."""


def timespan_ms(value: Any) -> int:
    """A .NET `TimeSpan` as configuration binds it, in milliseconds.

    .NET parses "[-][d.]hh:mm[:ss[.fffffff]]" and a bare integer as *days* (`TimeSpan.Parse("5")`
    is five days), so "200" is not 200 ms. A JSON number is bound the same way (as its text).

    Raises:
        HostConfigError: not a TimeSpan .NET would parse.
    """
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text) * 86_400_000
    match = re.fullmatch(r"(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?", text)
    if not match:
        raise HostConfigError(f"not a TimeSpan: {value!r}")
    sign, days, hours, minutes, seconds, fraction = match.groups()
    total = ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + int(seconds or 0)
    ms = total * 1000 + int(((fraction or "0") + "000")[:3])
    return -ms if sign else ms


def load_settings(path: Path | None) -> None:
    """Put `local.settings.json` Values into the environment (existing variables win), as
    `func start` does."""
    if path is None or not path.exists():
        return
    values = json.loads(path.read_text()).get("Values", {})
    for name, value in values.items():
        os.environ.setdefault(name, str(value))


def _override(path: str) -> str | None:
    # Any host.json value can be set by an app setting AzureFunctionsJobHost__a__b
    # (azure-functions-host, HostJsonFileConfigurationSource / ScriptConstants).
    return os.environ.get("AzureFunctionsJobHost__" + path.replace(".", "__"))


def queue_options(host_json: dict[str, Any], cpus: int | None = None) -> dict[str, Any]:
    """host.json `extensions.queues`, defaults filled in, app-setting overrides applied, checked.

    Raises:
        HostConfigError: a value the extension rejects at startup (batchSize outside 1..32,
            maxDequeueCount < 1, newBatchThreshold < 0, maxPollingInterval < 100 ms).
    """
    options: dict[str, Any] = dict(QUEUE_DEFAULTS)
    options.update(host_json.get("extensions", {}).get("queues", {}))
    for name in QUEUE_DEFAULTS:
        override = _override(f"extensions.queues.{name}")
        if override is not None:
            options[name] = override
    batch = int(options["batchSize"])
    if not 1 <= batch <= MAX_BATCH_SIZE:
        raise HostConfigError(f"extensions.queues.batchSize must be 1..{MAX_BATCH_SIZE} (QueuesOptions), not {batch}")
    if int(options["maxDequeueCount"]) < 1:
        raise HostConfigError("MaxDequeueCount must not be less than 1.")
    threshold = options["newBatchThreshold"]
    if threshold is None:
        threshold = (batch // 2) * (cpus or os.cpu_count() or 1)
    if int(threshold) < 0:
        raise HostConfigError("extensions.queues.newBatchThreshold must not be negative")
    polling = timespan_ms(options["maxPollingInterval"])
    if polling < MIN_POLLING_MS:
        raise HostConfigError(f"MaxPollingInterval must not be less than {MIN_POLLING_MS} ms.")
    encoding = str(options["messageEncoding"]).lower()
    if encoding not in ("base64", "none"):
        raise HostConfigError(f"extensions.queues.messageEncoding must be base64 or none, not {encoding}")
    return {
        "batchSize": batch,
        "newBatchThreshold": int(threshold),
        "maxPollingInterval": polling,
        "visibilityTimeout": timespan_ms(options["visibilityTimeout"]),
        "maxDequeueCount": int(options["maxDequeueCount"]),
        "messageEncoding": encoding,
    }


def function_timeout_ms(host_json: dict[str, Any]) -> int | None:
    """host.json `functionTimeout` in ms (None: unbounded).

    Raises:
        HostConfigError: below the host's 1 s minimum.
    """
    value = _override("functionTimeout") or host_json.get("functionTimeout")
    if value is None:
        return DEFAULT_FUNCTION_TIMEOUT_MS
    ms = timespan_ms(value)
    if ms == -86_400_000:  # "-1": unbounded (Premium/Dedicated/Flex)
        return None
    if ms < MIN_FUNCTION_TIMEOUT_MS:
        raise HostConfigError("FunctionTimeout must be greater than 00:00:01.")
    return ms


def thread_count() -> int | None:
    """The Python worker's sync thread pool size: `PYTHON_THREADPOOL_THREAD_COUNT`, else None,
    which `ThreadPoolExecutor` turns into min(32, cpus + 4) (azure-functions-python-worker,
    dispatcher.py `_get_sync_tp_max_workers`: no default from Python 3.9 on; a value below 1 or
    not an integer is ignored with a warning)."""
    raw = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


def resolve(expression: str) -> str:
    """`%SETTING%` → the setting's value (INameResolver.ResolveWholeString).

    Raises:
        HostConfigError: the setting is not defined (the real host refuses to index the function).
    """

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise HostConfigError(f"app setting '{name}' is not defined")
        return os.environ[name]

    return re.sub(r"%([^%]+)%", lookup, expression)


def queue_name(expression: str) -> str:
    """The queue a trigger listens on: resolved, lower-cased and validated as
    QueueTriggerAttributeBindingProvider.NormalizeAndValidate does (QueueClientExtensions.cs:
    3–63 chars; letters, digits, dashes; no leading, trailing or double dash).

    Raises:
        HostConfigError: an invalid name (the real host fails to index the function).
    """
    name = resolve(expression).lower()
    problem = None
    if not 3 <= len(name) <= 63:
        problem = "A queue name must be from 3 to 63 characters long"
    elif name[0] == "-" or name[-1] == "-":
        problem = "The dash (-) character may not be the first or last letter"
    elif not all(ch.isalnum() or ch == "-" for ch in name):
        problem = "A queue name can contain only letters, numbers, and dash(-) characters"
    elif "--" in name:
        problem = "A queue name cannot contain consecutive dash(-) characters."
    if problem:
        raise HostConfigError(f'{problem} - "{name}"')
    return name


def poison_queue_name(name: str) -> str | None:
    """`<queue>-poison`, or None where the extension keeps no poison queue (QueuesOptions remarks:
    a queue already ending in -poison, or one too long for the suffix)."""
    if name.endswith("-poison") or len(name) + len("-poison") > 63:
        return None
    return f"{name}-poison"


def check_names(function_name: str, binding_names: list[str]) -> None:
    """The host's name rules (Utility.cs IsValidFunctionName / ValidateBinding).

    Raises:
        HostConfigError: a name the host rejects.
    """
    if not FUNCTION_NAME.match(function_name):
        raise HostConfigError(f"'{function_name}' is not a valid function name.")
    for name in binding_names:
        if not BINDING_NAME.match(name):
            raise HostConfigError(f"The binding name {name} is invalid.")
