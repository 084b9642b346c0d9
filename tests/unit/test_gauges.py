"""The queue-depth gauge: what is read, what is emitted, and how the metric reaches Azure Monitor."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from opentelemetry import metrics as otel_metrics
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, HistogramDataPoint, InMemoryMetricReader

from shared.gauges import QueueDepth, emit, read_depths, record_depths


class FakeQueue:
    """A queue that answers Get Queue Properties with its message count (None: the header absent)."""

    def __init__(self, count: int | None, fail: bool = False) -> None:
        self.count = count
        self.fail = fail

    def get_queue_properties(self, **kwargs: Any) -> Any:
        if self.fail:
            raise ServiceRequestError("storage unreachable")
        return SimpleNamespace(approximate_message_count=self.count)


class Recorded:
    def __init__(self) -> None:
        self.values: list[tuple[int, dict[str, str]]] = []

    def record(self, amount: int, attributes: Mapping[str, str]) -> None:
        self.values.append((amount, dict(attributes)))


def test_reads_every_queue_in_order() -> None:
    queues = {"d365-lead-push": FakeQueue(7), "d365-lead-push-poison": FakeQueue(None)}
    assert read_depths(queues) == [QueueDepth("d365-lead-push", 7), QueueDepth("d365-lead-push-poison", 0)]


def test_each_reading_becomes_a_metric_record_and_an_event(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorded()
    with caplog.at_level(logging.INFO, logger="shared.gauges"):
        emit([QueueDepth("push", 3), QueueDepth("push-poison", 12)], recorder)
    assert recorder.values == [(3, {"queue": "push"}), (12, {"queue": "push-poison"})]
    events = [(r.getMessage(), r.queue, r.approximate_count) for r in caplog.records]  # type: ignore[attr-defined]
    assert events == [("d365_queue_depth", "push", 3), ("d365_queue_depth", "push-poison", 12)]


def test_a_failed_read_emits_nothing() -> None:
    recorder = Recorded()
    with pytest.raises(ServiceRequestError):
        record_depths({"push": FakeQueue(1), "push-poison": FakeQueue(2, fail=True)}, recorder)
    assert recorder.values == []


def test_the_metric_is_a_delta_histogram_so_each_reading_is_exported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Azure Monitor's exporter asks for delta histograms (exporter `_exporter.py`
    APPLICATION_INSIGHTS_METRIC_TEMPORALITIES); each export then carries the readings since the
    last one: valueCount = readings, valueSum = their sum, valueMax = the largest. A quiet interval
    exports nothing, so a reading is never repeated by an instance after the queue has changed."""
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(otel_metrics, "get_meter", provider.get_meter)

    record_depths({"push": FakeQueue(5), "push-poison": FakeQueue(2)})
    points = points_of(reader)
    assert {queue: (p.count, p.sum, p.max) for queue, p in points.items()} == {
        "push": (1, 5, 5),
        "push-poison": (1, 2, 2),
    }
    assert points_of(reader) == {}  # nothing new: nothing exported

    record_depths({"push-poison": FakeQueue(4)})
    record_depths({"push-poison": FakeQueue(9)})
    [(queue, point)] = points_of(reader).items()
    assert (queue, point.count, point.sum, point.max) == ("push-poison", 2, 13, 9)


def points_of(reader: InMemoryMetricReader) -> dict[str, HistogramDataPoint]:
    data = reader.get_metrics_data()
    found: dict[str, HistogramDataPoint] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.name == "d365_queue_depth"
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    assert point.attributes is not None
                    found[str(point.attributes["queue"])] = point
    return found


def test_the_exporter_prefers_delta_for_histograms_and_cumulative_for_gauges() -> None:
    """Why a histogram: read from the installed azure-monitor-opentelemetry-exporter."""
    from azure.monitor.opentelemetry.exporter.export.metrics._exporter import APPLICATION_INSIGHTS_METRIC_TEMPORALITIES
    from opentelemetry.sdk.metrics import ObservableGauge

    assert APPLICATION_INSIGHTS_METRIC_TEMPORALITIES[Histogram] is AggregationTemporality.DELTA
    assert APPLICATION_INSIGHTS_METRIC_TEMPORALITIES[ObservableGauge] is AggregationTemporality.CUMULATIVE
