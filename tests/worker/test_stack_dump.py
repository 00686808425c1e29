"""`kill -USR2` makes a worker process print every thread's stack, and it goes on."""

from __future__ import annotations

import signal

import pytest

from django_durable.models import Run, RunStatus, WorkerProcess
from tests.conftest import wait_for
from tests.testapp import workflows as wf

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_sigusr2_prints_every_threads_stack_and_the_worker_goes_on(worker_processes):
    proc = worker_processes.start("--poll-interval", "0.1")
    wait_for(lambda: WorkerProcess.objects.filter(pid=proc.pid).exists(), 60, "registered")
    # Registered is not yet looping: the worker syncs the code's schedules first. It logs
    # "serving" just before its loop, so the dump is taken once that line is out.
    wait_for(lambda: " serving " in worker_processes.logs(), 60, "the worker's loop")
    proc.send_signal(signal.SIGUSR2)

    # The main thread waits in the worker's loop; the others (heartbeat, runs) are listed
    # too. Waited for, not read once: the log may be read while the dump is being written.
    def dumped() -> bool:
        logs = worker_processes.logs()
        return "in _loop" in logs and logs.count("Thread 0x") >= 2

    try:
        wait_for(dumped, 30, "every thread's stack, the main thread's in the worker's loop")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker_processes.logs()}") from None
    run = wf.add.start(2, 3)
    wait_for(lambda: Run.objects.get(id=run.id).status == RunStatus.COMPLETED, 60, "the run")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
