"""OpenTelemetry, when it is installed: spans of runs and steps, metrics, trace context.

``opentelemetry`` is imported on first use, never by ``import django_durable``, and never at
all when the API is not installed: each entry point then costs one check and does nothing.
Installed but not configured (no TracerProvider or MeterProvider set), the API's no-op
objects answer, for a few microseconds per step.

Spans: ``durable.start <workflow>`` (PRODUCER) where a run is started, in the trace of the
code that started it (an HTTP request); its context is stored with the run. Each execution
of the run by a worker is a ``durable.run <workflow>`` span (CONSUMER), a child of it, and
each step body run is a ``durable.step <name>`` span, a child of the execution's span.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .runtime import StepInfo

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

# Attribute keys, shared by spans and metrics.
RUN_ID = "durable.run.id"
WORKFLOW = "durable.workflow.name"
ATTEMPT = "durable.run.attempt"
QUEUE = "durable.queue"
WORKER = "durable.worker.id"
STATUS = "durable.run.status"
OUTCOME = "durable.run.outcome"
STEP = "durable.step.name"
POSITION = "durable.step.position"
STEP_ATTEMPT = "durable.step.attempt"
STEP_OUTCOME = "durable.step.outcome"

# Step durations, in seconds: from a millisecond to ten minutes.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

# What a gauge's function returns: (value, attributes) pairs.
Observed = Iterable[tuple[float, dict[str, Any]]]

_UNSET: Any = object()
_lock = threading.RLock()
_loaded: Any = _UNSET  # an _OTel, None (the API is not installed), or _UNSET (not tried yet)
# Observable gauges, by name: created on every meter used (see ``add_gauge``).
_gauges: dict[str, tuple[Callable[[], Observed], str, str]] = {}


class _OTel:
    """The API's modules, our tracer, and our instruments."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        # Imported here, on first use: the API is an optional extra, and importing it costs.
        from opentelemetry import context, metrics, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.SpanKind = SpanKind
        self.Status = Status
        self.StatusCode = StatusCode
        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.Observation = metrics.Observation
        self.tracer = trace.get_tracer("django_durable", tracer_provider=tracer_provider)
        self.meter = metrics.get_meter("django_durable", meter_provider=meter_provider)
        self.started = self.meter.create_counter(
            "durable.run.started", unit="{run}", description="Runs claimed for the first time"
        )
        self.finished = self.meter.create_counter(
            "durable.run.finished", unit="{run}", description="Runs that ended, by status"
        )
        description = "How long step bodies ran, per attempt"
        try:
            self.step_duration = self.meter.create_histogram(
                "durable.step.duration",
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            )
        except TypeError:  # opentelemetry-api before 1.23 takes no advisory
            self.step_duration = self.meter.create_histogram(
                "durable.step.duration", unit="s", description=description
            )

    def gauge(self, name: str, observe: Callable[[], Observed], unit: str, text: str) -> None:
        observation = self.Observation

        def callback(options: CallbackOptions) -> Iterable[Observation]:
            return [observation(value, attributes) for value, attributes in observe()]

        self.meter.create_observable_gauge(name, callbacks=[callback], unit=unit, description=text)

    def parent(self, trace_context: Any) -> Any:
        """Return the context a run's stored trace context says (empty: a new trace)."""
        empty = self.context.Context()
        if not trace_context:
            return empty
        try:
            carrier = json.loads(trace_context) if isinstance(trace_context, str) else trace_context
            return self.propagate.extract(dict(carrier), context=empty)
        except (TypeError, ValueError):
            return empty


def _otel() -> _OTel | None:
    """Return the loaded API and instruments, or None when opentelemetry-api is missing."""
    global _loaded
    if _loaded is _UNSET:
        with _lock:
            if _loaded is _UNSET:
                try:
                    _loaded = _build(None, None)
                except ImportError:
                    _loaded = None
    return _loaded


def _build(tracer_provider: Any, meter_provider: Any) -> _OTel:
    otel = _OTel(tracer_provider, meter_provider)
    for name, (observe, unit, text) in _gauges.items():
        otel.gauge(name, observe, unit, text)
    return otel


def enabled() -> bool:
    """Return whether the OpenTelemetry API is installed (it may still not be configured)."""
    return _otel() is not None


def configure(
    *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> None:
    """Use these providers instead of the global ones (``None``: the global one)."""
    global _loaded
    with _lock:
        _loaded = _build(tracer_provider, meter_provider)


def reset() -> None:
    """Go back to the global providers, loaded again on next use."""
    global _loaded
    with _lock:
        _loaded = _UNSET


def add_gauge(name: str, observe: Callable[[], Observed], *, unit: str, description: str) -> None:
    """Report what ``observe()`` returns as the observable gauge ``name`` (once per name)."""
    with _lock:
        if name in _gauges:
            return
        otel = _otel()  # loaded before the gauge is listed: _build() does not create it twice
        _gauges[name] = (observe, unit, description)
        if otel is not None:
            otel.gauge(name, observe, unit, description)


# --- spans ------------------------------------------------------------------------------


class _NoSpan:
    """The span of a run or a step when OpenTelemetry is not installed: does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def outcome(self, kind: str) -> None:
        """Note how the execution ended."""


NO_SPAN = _NoSpan()


class _Span:
    """A started span, made current for the ``with`` block and ended after it."""

    __slots__ = ("_otel", "_span", "_token")

    def __init__(self, otel: _OTel, span: Span) -> None:
        self._otel = otel
        self._span = span
        self._token: Any = None

    def __enter__(self) -> _Span:
        self._token = self._otel.context.attach(self._otel.trace.set_span_in_context(self._span))
        return self

    def outcome(self, kind: str) -> None:
        """Note how the execution ended (``completed``, ``failed``, ``suspended``...)."""
        self._span.set_attribute(OUTCOME, kind)
        if kind == "failed":
            self._error(None)

    def _error(self, exc: BaseException | None) -> None:
        if exc is not None:
            self._span.record_exception(exc)
        detail = None if exc is None else f"{type(exc).__name__}: {exc}"
        otel = self._otel
        self._span.set_status(otel.Status(otel.StatusCode.ERROR, detail))

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            # Control flow (a suspension, a cancellation) derives from BaseException: no error.
            if isinstance(exc, Exception):
                self._error(exc)
        finally:
            self._otel.context.detach(self._token)
            self._span.end()


class _StepSpan(_Span):
    """A step body's span, which also records the body's duration."""

    __slots__ = ("_attributes", "_began")

    def __init__(self, otel: _OTel, span: Span, step: StepInfo) -> None:
        super().__init__(otel, span)
        self._attributes = {WORKFLOW: step.workflow_name, STEP: step.name}
        self._began = time.perf_counter()

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        outcome = "ok" if exc is None else "error"
        self._span.set_attribute(STEP_OUTCOME, outcome)
        try:
            super().__exit__(kind, exc, tb)
        finally:
            seconds = time.perf_counter() - self._began
            self._otel.step_duration.record(seconds, {**self._attributes, STEP_OUTCOME: outcome})


def run_span(
    *,
    run_id: str,
    workflow_name: str,
    attempt: int,
    queue: str,
    worker_id: str,
    trace_context: Any,
) -> _Span | _NoSpan:
    """Return the span of one execution of a run, a child of the context stored at start."""
    otel = _otel()
    if otel is None:
        return NO_SPAN
    attributes: dict[str, Any] = {
        RUN_ID: run_id,
        WORKFLOW: workflow_name,
        ATTEMPT: attempt,
        QUEUE: queue,
        WORKER: worker_id,
    }
    span = otel.tracer.start_span(
        f"durable.run {workflow_name}",
        context=otel.parent(trace_context),
        kind=otel.SpanKind.CONSUMER,
        attributes=attributes,
    )
    return _Span(otel, span)


def step_span(step: StepInfo) -> _Span | _NoSpan:
    """Return the span of one run of a step's body, a child of the current span."""
    otel = _otel()
    if otel is None:
        return NO_SPAN
    attributes: dict[str, Any] = {
        RUN_ID: step.run_id,
        WORKFLOW: step.workflow_name,
        STEP: step.name,
        POSITION: step.position,
        STEP_ATTEMPT: step.attempt,
    }
    span = otel.tracer.start_span(f"durable.step {step.name}", attributes=attributes)
    return _StepSpan(otel, span, step)


def started(*, run_id: str, workflow_name: str, queue: str) -> dict[str, str] | None:
    """Record a ``durable.start`` span; return its context to store with the run.

    The span is a child of the current one (the request starting the run). ``None`` when
    there is nothing to store: no OpenTelemetry, or no TracerProvider configured.
    """
    otel = _otel()
    if otel is None:
        return None
    span = otel.tracer.start_span(
        f"durable.start {workflow_name}",
        kind=otel.SpanKind.PRODUCER,
        attributes={RUN_ID: run_id, WORKFLOW: workflow_name, QUEUE: queue},
    )
    carrier: dict[str, str] = {}
    try:
        otel.propagate.inject(carrier, context=otel.trace.set_span_in_context(span))
    finally:
        span.end()
    return carrier or None


# --- metrics ----------------------------------------------------------------------------


def count_started(workflow_name: str, queue: str) -> None:
    """Count a run claimed for the first time."""
    otel = _otel()
    if otel is not None:
        otel.started.add(1, {WORKFLOW: workflow_name, QUEUE: queue})


def count_finished(workflow_name: str, status: str) -> None:
    """Count a run that ended with ``status``."""
    otel = _otel()
    if otel is not None:
        otel.finished.add(1, {WORKFLOW: workflow_name, STATUS: status})
