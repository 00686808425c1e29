"""Fixtures: the signals a test hears, and OpenTelemetry's SDK with in-memory exporters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import django_durable as durable
from django_durable.core import telemetry

SIGNALS = ("run_started", "run_finished", "run_failed", "step_retried", "run_taken_over")


@dataclasses.dataclass
class Heard:
    """One signal as a receiver got it."""

    name: str
    sender: Any
    kwargs: dict[str, Any]


class Signals:
    """Every durable signal sent while the fixture is active, in order."""

    def __init__(self) -> None:
        self.heard: list[Heard] = []

    def receiver(self, name: str) -> Any:
        def receive(signal: Any, sender: Any, **kwargs: Any) -> None:
            self.heard.append(Heard(name, sender, kwargs))

        return receive

    def of(self, run_id: str) -> list[Heard]:
        return [heard for heard in self.heard if heard.kwargs["run_id"] == str(run_id)]

    def names(self, run_id: str) -> list[str]:
        return [heard.name for heard in self.of(run_id)]


@pytest.fixture
def signals() -> Iterator[Signals]:
    recorder = Signals()
    receivers = {name: recorder.receiver(name) for name in SIGNALS}
    for name, receive in receivers.items():
        getattr(durable, name).connect(receive, weak=False)
    yield recorder
    for name, receive in receivers.items():
        getattr(durable, name).disconnect(receive)


@dataclasses.dataclass
class Telemetry:
    """The SDK's in-memory exporters that django-durable reports to during a test."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.finished_spans() if span.name.startswith(prefix)]

    def points(self, metric: str) -> list[Any]:
        """Return the data points of ``metric`` collected now."""
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name == metric:
                        found += list(item.data.data_points)
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.configure(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Telemetry(spans, reader, tracer_provider)
    telemetry.reset()
    tracer_provider.shutdown()
    meter_provider.shutdown()
