"""Structured logs: the worker's lines about a run carry the run, its workflow, attempt and
worker (and the step, inside a step body) as record attributes, for JSON formatters."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run
from django_durable.testing import run_until_finished
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

shop = logging.getLogger("tests.shop")
FIELDS = ("durable_run_id", "durable_workflow", "durable_attempt", "durable_worker_id")
STEP_FIELDS = ("durable_step", "durable_step_attempt")


def charge(order: str) -> str:
    info = durable.step_info()
    shop.info("charging %s", order)
    if info.attempt == 1:
        raise ConnectionError("the bank hung up")
    return "charged"


@durable.workflow(name="tests.observability.logs")
def logs(ctx: durable.Context, order: str) -> str:
    shop.info("starting %s", order)
    policy = durable.RetryPolicy(max_attempts=2, initial_delay=0, jitter=0)
    return ctx.step("charge", charge, order, retry=policy)


def fields(record: logging.LogRecord, names=FIELDS + STEP_FIELDS) -> dict:
    return {name: getattr(record, name) for name in names if hasattr(record, name)}


def test_a_workers_line_about_a_failed_run_carries_the_run(caplog):
    caplog.set_level(logging.INFO, logger="django_durable")
    handle = wf.boom.start()
    worker = Worker()
    worker.run_once()
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "failed: ValueError: boom" in record.getMessage()
    assert fields(record) == {
        "durable_run_id": handle.id,
        "durable_workflow": "tests.boom",
        "durable_attempt": 1,
        "durable_worker_id": worker.id,
    }


def test_lines_in_a_step_body_carry_the_step_and_its_attempt(caplog):
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(durable.RunLogFilter())  # as a project adds it to its handler
    handle = logs.start("A-1")
    run_until_finished(handle)
    assert handle.result(timeout=1) == "charged"
    mine = [r for r in caplog.records if r.name == "tests.shop"]
    assert [r.getMessage() for r in mine] == [
        "starting A-1",
        "charging A-1",
        "starting A-1",  # the replay after the retry's backoff
        "charging A-1",
    ]
    run = {"durable_run_id": handle.id, "durable_workflow": "tests.observability.logs"}
    for record in mine:
        assert fields(record, FIELDS[:2]) == run
        assert record.durable_attempt == 1
    assert [fields(r, STEP_FIELDS) for r in mine] == [
        {},
        {"durable_step": "charge", "durable_step_attempt": 1},
        {},
        {"durable_step": "charge", "durable_step_attempt": 2},
    ]
    assert all(isinstance(r.durable_worker_id, str) and r.durable_worker_id for r in mine)


def test_a_takeover_line_carries_the_run_it_took(caplog):
    caplog.set_level(logging.INFO, logger="django_durable")
    handle = wf.counted.start(1)
    Worker().claim(1)  # a worker that then vanishes
    Run.objects.filter(pk=handle.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taker = Worker()
    taker.run_once()
    [record] = [r for r in caplog.records if "takes over" in r.getMessage()]
    assert fields(record) == {
        "durable_run_id": handle.id,
        "durable_workflow": "tests.counted",
        "durable_worker_id": taker.id,
    }


def test_lines_outside_a_run_carry_no_run(caplog):
    caplog.set_level(logging.INFO, logger="django_durable")
    Worker()  # installs the filter on the django_durable logger
    logging.getLogger("django_durable").info("between runs")
    [record] = [r for r in caplog.records if r.getMessage() == "between runs"]
    assert fields(record) == {}
