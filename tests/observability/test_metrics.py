"""OpenTelemetry metrics: runs started and finished, step durations, queue lag, runs in
flight per worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_durable import Worker
from django_durable.models import Run
from django_durable.testing import run_until_finished
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def counts(points) -> dict[tuple, int]:
    return {tuple(sorted(point.attributes.items())): point.value for point in points}


def test_runs_started_and_finished_are_counted_by_workflow_and_status(otel):
    wf.add.start(1, 2)
    wf.add.start(3, 4)
    wf.boom.start()
    Worker().run_once()
    started = counts(otel.points("durable.run.started"))
    assert started == {
        (("durable.queue", "default"), ("durable.workflow.name", "tests.add")): 2,
        (("durable.queue", "default"), ("durable.workflow.name", "tests.boom")): 1,
    }
    finished = counts(otel.points("durable.run.finished"))
    assert finished == {
        (("durable.run.status", "completed"), ("durable.workflow.name", "tests.add")): 2,
        (("durable.run.status", "failed"), ("durable.workflow.name", "tests.boom")): 1,
    }


def test_a_run_resumed_is_not_counted_as_started_again(otel):
    handle = wf.flaky.start(1)  # its step fails once: two executions
    run_until_finished(handle)
    [started] = otel.points("durable.run.started")
    assert started.value == 1


def test_step_durations_are_a_histogram_by_workflow_step_and_outcome(otel):
    handle = wf.counted.start(2, pause=0.05)
    flaky = wf.flaky.start(1)
    run_until_finished(handle, flaky)
    points = {
        tuple(sorted(point.attributes.items())): point
        for point in otel.points("durable.step.duration")
    }
    counted = points[
        (
            ("durable.step.name", "step-0"),
            ("durable.step.outcome", "ok"),
            ("durable.workflow.name", "tests.counted"),
        )
    ]
    assert counted.count == 1
    assert 0.05 <= counted.sum < 5  # seconds
    failed = points[
        (
            ("durable.step.name", "flaky"),
            ("durable.step.outcome", "error"),
            ("durable.workflow.name", "tests.flaky"),
        )
    ]
    assert failed.count == 1
    assert len(points) == 4  # step-0, step-1, and flaky once failed and once not


def lag(otel, queue: str) -> float | None:
    found = [
        p.value
        for p in otel.points("durable.queue.lag")
        if p.attributes == {"durable.queue": queue}
    ]
    return found[0] if found else None


def test_queue_lag_is_the_age_of_the_oldest_ready_run(otel):
    worker = Worker(queues=["lagging"])
    assert lag(otel, "lagging") == 0.0  # nothing waits
    old = wf.add.using(queue="lagging").start(1, 1)
    wf.add.using(queue="lagging").start(2, 2)
    Run.objects.filter(pk=old.id).update(available_at=timezone.now() - timedelta(seconds=90))
    later = wf.add.using(queue="lagging", delay=3600).start(3, 3)  # not ready: not counted
    assert 90 <= lag(otel, "lagging") < 120
    worker.run_once()
    assert lag(otel, "lagging") == 0.0
    assert Run.objects.get(pk=later.id).status == "pending"


def test_runs_in_flight_are_a_gauge_per_worker(otel):
    worker = Worker(concurrency=3)
    idle = Worker(concurrency=1)

    def in_flight() -> dict[str, float]:
        return {
            point.attributes["durable.worker.id"]: point.value
            for point in otel.points("durable.worker.in_flight")
        }

    wf.add.start(1, 1)
    wf.add.start(2, 2)
    claims = worker.claim(3)
    assert len(claims) == 2
    now = in_flight()
    assert (now[worker.id], now[idle.id]) == (2, 0)
    for claim in claims:
        worker.process(claim)
    assert in_flight()[worker.id] == 0
