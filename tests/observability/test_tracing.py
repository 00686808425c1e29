"""OpenTelemetry spans: the code that starts a run, each execution of the run by a worker,
and each step body, in one trace, whatever process and however many executions."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from opentelemetry.trace import SpanKind, StatusCode
from rest_framework.test import APIClient

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run
from django_durable.testing import run_until_finished
from tests.observability import middleware
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

# A caller's W3C trace context: trace id, then the caller's span id.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def by_name(spans, name):
    [span] = [span for span in spans if span.name == name]
    return span


def test_a_run_started_in_a_span_is_traced_under_it_with_its_steps(otel):
    tracer = otel.tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("POST /orders/") as request:
        handle = wf.step_function.start(3)
    Worker().run_once()
    assert handle.result(timeout=1) == 12
    spans = otel.finished_spans()
    start = by_name(spans, "durable.start tests.step_function")
    execution = by_name(spans, "durable.run tests.step_function")
    steps = [span for span in spans if span.name == "durable.step double"]
    trace_id = request.get_span_context().trace_id
    assert {span.context.trace_id for span in spans} == {trace_id}
    assert start.parent.span_id == request.get_span_context().span_id
    assert start.kind == SpanKind.PRODUCER
    assert execution.parent.span_id == start.context.span_id
    assert execution.kind == SpanKind.CONSUMER
    assert [step.parent.span_id for step in steps] == [execution.context.span_id] * 2
    assert execution.attributes["durable.run.id"] == handle.id
    assert execution.attributes["durable.workflow.name"] == "tests.step_function"
    assert execution.attributes["durable.run.attempt"] == 1
    assert execution.attributes["durable.run.outcome"] == "completed"
    assert [step.attributes["durable.step.position"] for step in steps] == [0, 1]
    assert {step.attributes["durable.step.outcome"] for step in steps} == {"ok"}
    # The stored context is the start span's.
    stored = Run.objects.get(pk=handle.id).trace_context
    assert list(stored) == ["traceparent"]
    assert stored["traceparent"].split("-")[:3] == ["00", hex_trace(start), hex_span(start)]


def hex_trace(span) -> str:
    return format(span.context.trace_id, "032x")


def hex_span(span) -> str:
    return format(span.context.span_id, "016x")


def test_the_http_requests_trace_id_is_carried_into_every_execution(otel, settings):
    middleware.TRACER = otel.tracer_provider.get_tracer("tests.http")
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "tests.observability.middleware.ServerSpanMiddleware",
    ]
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_user("ada"))
    response = api.post(
        "/durable/runs/",
        {"workflow": "tests.http_receives", "args": ["traced"]},
        format="json",
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    worker = Worker()
    worker.run_once()  # waits for its message
    durable.send(run_id, "yes", topic="approval")
    run_until_finished(run_id)
    spans = otel.finished_spans()
    assert {hex_trace(span) for span in spans} == {TRACE_ID}
    server = by_name(spans, "POST /durable/runs/")
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    start = by_name(spans, "durable.start tests.http_receives")
    assert start.parent.span_id == server.context.span_id
    executions = [span for span in spans if span.name == "durable.run tests.http_receives"]
    assert [span.attributes["durable.run.outcome"] for span in executions] == [
        "suspended",
        "completed",
    ]
    assert {span.parent.span_id for span in executions} == {start.context.span_id}


def test_a_failing_step_is_an_error_span_and_the_failed_run_too(otel):
    handle = wf.flaky.start(1)
    run_until_finished(handle)
    steps = otel.named("durable.step flaky")
    assert [step.attributes["durable.step.attempt"] for step in steps] == [1, 2]
    failed, succeeded = steps
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "ConnectionError: try 1 failed"
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.attributes["durable.step.outcome"] == "error"
    assert succeeded.status.status_code == StatusCode.UNSET
    executions = otel.named("durable.run tests.flaky")
    assert [span.attributes["durable.run.outcome"] for span in executions] == [
        "suspended",
        "completed",
    ]

    boom = wf.boom.start()
    Worker().run_once()
    [execution] = [
        s for s in otel.named("durable.run") if s.attributes["durable.run.id"] == boom.id
    ]
    assert execution.status.status_code == StatusCode.ERROR
    assert execution.attributes["durable.run.outcome"] == "failed"


def test_an_async_workflows_steps_are_children_of_its_executions(otel):
    handle = wf.async_add.start(1, 2)
    run_until_finished(handle)
    assert handle.result(timeout=1) == 8
    executions = {span.context.span_id: span for span in otel.named("durable.run tests.async_add")}
    assert len(executions) == 2  # before and after its sleep
    steps = otel.named("durable.step")
    assert [step.name for step in steps] == [
        "durable.step async-add",
        "durable.step sync-add",
        "durable.step double",
    ]
    assert all(step.parent.span_id in executions for step in steps)
    first, second = sorted(executions.values(), key=lambda span: span.start_time)
    assert [step.parent.span_id for step in steps] == [first.context.span_id] * 2 + [
        second.context.span_id
    ]


def test_a_child_run_is_traced_under_its_parents_execution(otel):
    handle = wf.parent_one.start(5)
    run_until_finished(handle)
    assert handle.result(timeout=1) == 10
    spans = otel.finished_spans()
    assert len({span.context.trace_id for span in spans}) == 1
    parent_start = by_name(spans, "durable.start tests.parent_one")
    assert parent_start.parent is None  # nothing was traced when it started: a new trace
    parent_runs = [s for s in spans if s.name == "durable.run tests.parent_one"]
    child_start = by_name(spans, "durable.start tests.child_double")
    assert child_start.parent.span_id == parent_runs[0].context.span_id
    child_run = by_name(spans, "durable.run tests.child_double")
    assert child_run.parent.span_id == child_start.context.span_id


def test_without_a_tracer_provider_nothing_is_stored_with_the_run():
    # OpenTelemetry's API is installed here, but no provider is configured (the default).
    handle = wf.add.start(1, 2)
    Worker().run_once()
    assert handle.result(timeout=1) == 3
    assert Run.objects.get(pk=handle.id).trace_context is None
