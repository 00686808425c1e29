"""A step whose worker was killed in the middle of its body shows two executions, in the
database, the admin, ``manage.py durable`` and the HTTP API alike."""

from __future__ import annotations

import html
import io
import signal

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

from django_durable.models import Run, Step, StepStatus
from tests.conftest import wait_for
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--lease", "1", "--poll-interval", "0.1")


def test_a_step_cut_short_by_sigkill_shows_two_executions(worker_processes, client):
    handle = wf.counted.start(2, pause=1.5)
    first = worker_processes.start(*FAST)
    bodies = Execution.objects.filter(run_id=handle.id, label="step-0")
    wait_for(bodies.exists, 30, "the first step's body began")
    # Begun, not ended: once the body has run for RECORD_STEP_START_AFTER (0.5 s), the
    # record says so while it runs.
    begun = Step.objects.filter(run_id=handle.id, position=0)
    wait_for(begun.exists, 30, "the record that the first step's body began")
    running = begun.get()
    assert (running.status, running.executions, running.attempts) == (StepStatus.RUNNING, 1, 0)
    worker_processes.signal(first, signal.SIGKILL)  # in the middle of its 1.5 s body
    first.wait(5)
    worker_processes.start(*FAST)
    wait_for(lambda: Run.objects.get(pk=handle.id).is_terminal, 60, "run finished")
    assert handle.result(timeout=1) == 1, worker_processes.logs()
    assert bodies.count() == 2  # the body really ran twice
    step = Step.objects.get(run_id=handle.id, position=0)
    # Two executions; one attempt ended (the killed one never did).
    assert (step.status, step.executions, step.attempts) == (StepStatus.COMPLETED, 2, 1)
    assert Step.objects.get(run_id=handle.id, position=1).executions == 1

    # Each face says so.
    out = io.StringIO()
    call_command("durable", "runs", "steps", str(handle.id), stdout=out)
    assert "1 (ran 2 times)" in out.getvalue(), out.getvalue()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get(reverse("admin:django_durable_run_change", args=[handle.id]))
    assert "1 (ran 2 times)" in html.unescape(page.content.decode())
    steps = client.get(f"/durable/runs/{handle.id}/").json()["steps"]
    assert [(s["attempts"], s["executions"]) for s in steps] == [(1, 2), (1, 1)]
