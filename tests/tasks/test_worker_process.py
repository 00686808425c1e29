"""A real ``run_workflow_worker`` process runs the tasks: enqueue here, read the result here.

The worker finds the tasks by itself (the app's ``tasks`` module), executes them in its
own process, and this process reads what happened from the runs.
"""

from __future__ import annotations

import os
import time

import pytest

from django_durable.models import WorkerProcess
from django_durable.tasks import compat
from tests.testapp import tasks as t

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FAST = ("--poll-interval", "0.1", "--queue", "default", "--queue", "emails")


def wait_finished(results, worker_processes, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(result.is_finished for result in results):
        if time.monotonic() > deadline:
            pytest.fail(f"the tasks did not finish:\n{worker_processes.logs()}")
        time.sleep(0.05)
        for result in results:
            result.refresh()


def test_a_worker_process_runs_enqueued_tasks_and_the_results_come_back(worker_processes):
    added = t.add.enqueue(20, 22)
    recorded = t.record.enqueue("in the worker")
    emailed = t.send_email.enqueue("ada@example.com")
    failed = t.fail.enqueue("boom")
    retried = t.flaky.enqueue(2)
    worker = worker_processes.start(*FAST)
    wait_finished((added, recorded, emailed, failed, retried), worker_processes)
    assert worker.poll() is None, worker_processes.logs()
    assert added.return_value == 42
    assert recorded.return_value == worker.pid
    assert recorded.return_value != os.getpid()
    assert emailed.return_value == "sent to ada@example.com"
    assert failed.status == compat.TaskResultStatus.FAILED
    assert failed.errors[0].exception_class is ValueError
    assert "raise ValueError(message)" in failed.errors[0].traceback
    assert (retried.return_value, retried.attempts) == (2, 2)
    # The worker found the tasks by itself, and registered them as the workflows it runs.
    row = WorkerProcess.objects.get(pid=worker.pid)
    assert {"tests.testapp.tasks.add", "tests.testapp.tasks.flaky"} <= set(row.workflows)
