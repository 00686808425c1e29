"""Execute workflow runs inside your tests, in the test's own thread, with no worker process.

::

    from django_durable.testing import run_until_finished

    @pytest.mark.django_db(transaction=True)
    def test_fulfil_order():
        handle = fulfil_order.start("A-1")
        run_until_finished(handle)
        assert handle.result() == {...}

Runs execute as a worker executes them: checkpoints are committed, replay, retries, timers,
children and event triggers all happen for real. So the test's database must let commits
happen: pytest-django's ``transaction=True``, or Django's ``TransactionTestCase``. Inside a
test wrapped in one transaction (plain ``django_db``, ``TestCase``) these helpers say so
instead of failing deep in the worker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from django.db import transaction

from .client import RunHandle, _get
from .conf import get_settings
from .exceptions import DurableError
from .models import Run
from .worker import Worker

__all__ = ["run_ready", "run_until_finished"]

_IDLE_PAUSE = 0.02  # seconds between rounds while nothing is ready (a timer, a backoff)


def run_until_finished(
    *runs: RunHandle | str | uuid.UUID, timeout: float = 30.0
) -> list[RunHandle]:
    """Execute runs here until each of ``runs`` has finished; return their handles, read again.

    Every ready run is executed, not only these: their children, the runs their events
    trigger, others they wait for. While none is ready (a sleep, a retry's backoff) it
    pauses a little, in real time. A run waiting for an event or a message waits until
    the test sends it, so send it first (or from another thread). Raises ``TimeoutError``,
    saying what each unfinished run waits for, if they are not all finished after
    ``timeout`` seconds.
    """
    if not runs:
        raise TypeError("run_until_finished() needs at least one run (a RunHandle or an id).")
    handles = [run if isinstance(run, RunHandle) else RunHandle(_get(run)) for run in runs]
    _check_commits_happen()
    deadline = time.monotonic() + timeout
    while True:
        unfinished = [handle for handle in handles if not handle.refresh().is_finished]
        if not unfinished:
            return handles
        if time.monotonic() > deadline:
            raise TimeoutError(_still_going(unfinished, timeout))
        if _round() == 0:
            time.sleep(_IDLE_PAUSE)


def run_ready(*, timeout: float = 30.0) -> int:
    """Execute runs here until none is ready now; return how many executions there were.

    A run that sleeps, backs off or waits for an event or a message stays waiting: this
    does not wait for time to pass. Raises ``TimeoutError`` if runs are still ready after
    ``timeout`` seconds (a workflow that starts runs without end).
    """
    _check_commits_happen()
    deadline = time.monotonic() + timeout
    executed = 0
    while (count := _round()) > 0:
        executed += count
        if time.monotonic() > deadline:
            raise TimeoutError(f"Runs were still ready after {timeout} seconds.")
    return executed


def _round() -> int:
    """One worker round over every queue that has unfinished runs; return runs executed."""
    alias = get_settings().DATABASE
    queues = set(Run.objects.using(alias).active().values_list("queue", flat=True).distinct()) | {
        get_settings().DEFAULT_QUEUE
    }
    return Worker(queues=sorted(queues)).run_once()


def _check_commits_happen() -> None:
    alias = get_settings().DATABASE
    if transaction.get_connection(alias).in_atomic_block:
        raise DurableError(
            "Runs cannot execute inside a transaction: each checkpoint must commit. In "
            "pytest-django mark the test @pytest.mark.django_db(transaction=True); with "
            "Django's test runner use TransactionTestCase instead of TestCase."
        )


def _still_going(handles: Iterable[RunHandle], timeout: float) -> str:
    lines = [f"Runs not finished after {timeout} seconds:"]
    for handle in handles:
        run = handle.model
        waiting = f", waiting for {run.waiting_for}" if run.waiting_for else ""
        lines.append(f"- {run.id} ({run.workflow_name}): {run.status}{waiting}")
    return "\n".join(lines)
