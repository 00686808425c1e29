"""What a worker says in its log: a WARNING when a run fails, an INFO line when it takes over
a run whose worker was lost (its lease expired)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone

from django_durable import Worker
from django_durable.models import Run, RunStatus
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def lines(caplog, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "django_durable" and record.levelno == level
    ]


def test_a_failed_run_is_a_warning_that_says_what_failed(caplog):
    caplog.set_level(logging.DEBUG, logger="django_durable")
    handle = wf.boom.start()
    worker = Worker()
    worker.run_once()
    assert Run.objects.get(pk=handle.id).status == RunStatus.FAILED
    [line] = [m for m in lines(caplog, logging.WARNING) if handle.id in m]
    assert line == (
        f"Worker {worker.id}: run {handle.id} of workflow 'tests.boom' failed: ValueError: boom"
    )


def test_a_completed_run_is_no_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="django_durable")
    wf.add.start(1, 1)
    Worker().run_once()
    assert lines(caplog, logging.WARNING) == []


def test_taking_over_a_run_whose_lease_expired_is_an_info_line(caplog):
    caplog.set_level(logging.DEBUG, logger="django_durable")
    handle = wf.counted.start(2)
    lost, taker = Worker(), Worker()
    [_claim] = lost.claim(1)  # then it vanishes without a word
    Run.objects.filter(pk=handle.id).update(
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    caplog.clear()
    taker.run_once()
    assert handle.result(timeout=1) == 1
    [line] = [m for m in lines(caplog, logging.INFO) if "takes over" in m]
    assert line == (
        f"Worker {taker.id} takes over run {handle.id} of workflow 'tests.counted' "
        f"from worker {lost.id}, whose lease expired (takeover 1 in a row); it is ready again"
    )
