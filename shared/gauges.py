"""The queues' real depth, read and emitted as a gauge Application Insights can chart and alert on.

Why a reading and not an estimate: storage queue platform metrics are account-wide and hourly, and
counting the events that fill the poison queue misses whatever sampling dropped, messages Hunter or
an operator moved by hand, and messages that expired. `approximate_message_count` (Get Queue
Properties, `x-ms-approximate-messages-count`) is the queue's own count: it may include messages
that are currently invisible (being processed, or waiting for a retry) and lag deletions slightly.

Each reading is emitted twice, under one name, `d365_queue_depth`:
- an OpenTelemetry **histogram** record (attribute `queue`), which the Azure Monitor exporter sends
  as a metric: one `customMetrics` row per queue per export interval (60 s) with `name`, `value` =
  `valueSum`, `valueCount`, `valueMin`/`valueMax`, and the attributes in `customDimensions`.
  Microsoft's "Add and modify Azure Monitor OpenTelemetry" (azure-monitor-docs
  `articles/azure-monitor/app/opentelemetry-add-modify.md`, "Add custom metrics") lists the
  instruments; a histogram is used, not a gauge, because the exporter sends histograms with delta
  temporality (each reading once) while a synchronous gauge is cumulative (the instance that took a
  reading would repeat it every minute, long after the queue changed). Metrics are not sampled.
- a structured log event (`d365_queue_depth`, fields `queue`, `approximate_count`) for the local
  stack and the `traces` table.

No `azure.functions` here: `shared/monitor.py` is the timer trigger that calls `record_depths`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import metrics

logger = logging.getLogger(__name__)

METRIC_NAME = "d365_queue_depth"
EVENT_NAME = "d365_queue_depth"


class QueueWithProperties(Protocol):
    """The part of `azure.storage.queue.QueueClient` a reading needs."""

    def get_queue_properties(self) -> Any: ...


@dataclass(frozen=True)
class QueueDepth:
    """One reading: a queue and its approximate message count."""

    queue: str
    approximate_count: int


class DepthRecorder(Protocol):
    """Where readings go (the OpenTelemetry histogram in the app; a list in tests)."""

    def record(self, amount: int, attributes: Mapping[str, str]) -> None: ...


def _histogram() -> DepthRecorder:
    # The global meter provider: the Azure Monitor distro's when telemetry.configure() set one up,
    # else OpenTelemetry's no-op provider.
    meter = metrics.get_meter("shared.gauges")
    return meter.create_histogram(
        METRIC_NAME, unit="{message}", description="Approximate message count of a lead push queue"
    )


def read_depths(queues: Mapping[str, QueueWithProperties]) -> list[QueueDepth]:
    """Read each queue's approximate message count, in the order given.

    Raises:
        azure.core.exceptions.AzureError: storage refused or failed a read (the invocation fails and
            the next occurrence tries again; a reading is never made up).
    """
    depths = []
    for name, client in queues.items():
        properties = client.get_queue_properties()
        depths.append(QueueDepth(name, int(properties.approximate_message_count or 0)))
    return depths


def emit(depths: Iterable[QueueDepth], recorder: DepthRecorder | None = None) -> None:
    """Record each reading on the metric and log it as the `d365_queue_depth` event."""
    target = recorder if recorder is not None else _histogram()
    for depth in depths:
        target.record(depth.approximate_count, {"queue": depth.queue})
        logger.info(EVENT_NAME, extra={"queue": depth.queue, "approximate_count": depth.approximate_count})


def record_depths(queues: Mapping[str, QueueWithProperties], recorder: DepthRecorder | None = None) -> list[QueueDepth]:
    """Read every queue, then emit the readings (all or none: a failed read emits nothing).

    Raises:
        azure.core.exceptions.AzureError: as `read_depths`.
    """
    depths = read_depths(queues)
    emit(depths, recorder)
    return depths
