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

Timers need not take real time: inside ``with time_machine():``, ``skip(timedelta(days=3))``
moves django-durable's clock forward, and a run sleeping three days is due at once.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.db import transaction

from .client.handle import RunHandle
from .client.lookup import get_row
from .core import clock
from .core.conf import get_settings
from .core.durations import CENTURY, to_seconds
from .exceptions import DurableError
from .models import Run
from .worker.worker import Worker

__all__ = ["TimeMachine", "run_all", "run_ready", "run_until_finished", "skip", "time_machine"]

_IDLE_PAUSE = 0.02  # seconds between rounds while nothing is ready (a timer, a backoff)
_LISTED = 20  # unfinished runs a TimeoutError of run_all() names at most


def run_until_finished(
    *runs: RunHandle | str | uuid.UUID, timeout: float = 30.0
) -> list[RunHandle]:
    """Execute runs here until each of ``runs`` has finished; return their handles, read again.

    Every ready run is executed, not only these: their children, the runs their events
    trigger, others they wait for. While none is ready (a sleep, a retry's backoff) it
    pauses a little, in real time (``skip()`` the test clock instead of waiting). A run
    waiting for an event or a message waits until the test sends it, so send it first (or
    from another thread). Raises ``TimeoutError``, saying what each unfinished run waits
    for, if they are not all finished after ``timeout`` seconds.
    """
    if not runs:
        raise TypeError("run_until_finished() needs at least one run (a RunHandle or an id).")
    handles = [run if isinstance(run, RunHandle) else RunHandle(get_row(run)) for run in runs]
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
    does not wait for time to pass (``skip()`` makes it pass). Raises ``TimeoutError`` if
    runs are still ready after ``timeout`` seconds (a workflow that starts runs without end).
    """
    _check_commits_happen()
    deadline = time.monotonic() + timeout
    executed = 0
    while (count := _round()) > 0:
        executed += count
        if time.monotonic() > deadline:
            raise TimeoutError(f"Runs were still ready after {timeout} seconds.")
    return executed


def run_all(*, timeout: float = 30.0) -> int:
    """Execute runs here until no run is unfinished; return how many executions there were.

    :func:`run_until_finished` for every run there is, including those the runs start on
    the way (children, triggered runs). A run waiting for an event or a message that
    nobody sends keeps it going until ``timeout``: then ``TimeoutError`` lists each
    unfinished run and what it waits for.
    """
    _check_commits_happen()
    deadline = time.monotonic() + timeout
    executed = 0
    while True:
        count = _round()
        executed += count
        if count == 0:
            unfinished = _unfinished()
            if not unfinished:
                return executed
            if time.monotonic() > deadline:
                raise TimeoutError(_still_going(unfinished, timeout))
            time.sleep(_IDLE_PAUSE)
        elif time.monotonic() > deadline:
            raise TimeoutError(_still_going(_unfinished(), timeout))


def _unfinished() -> list[RunHandle]:
    runs = Run.objects.using(get_settings().DATABASE).active().order_by("created_at", "id")
    return [RunHandle(run) for run in runs[:_LISTED]]


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


class TimeMachine:
    """The test clock of a :func:`time_machine` block: :meth:`skip` moves it forward."""

    def skip(self, duration: float | timedelta) -> datetime:
        """Move the clock forward by ``duration`` (seconds or a timedelta); return the new time.

        Runs whose timers, timeouts or batch timeouts come within it are due at the next
        worker round (``run_until_finished``, ``run_ready``, ``Worker.run_once``).
        """
        if _active is not self:
            raise DurableError("This time_machine() block has ended: its clock cannot move.")
        seconds = to_seconds(duration, "skip()")
        to_seconds(clock.skipped() + seconds, "The time skipped in all", limit=CENTURY)
        clock.set_skipped(clock.skipped() + seconds)
        return clock.now()

    @property
    def skipped(self) -> timedelta:
        """Return how far the clock was moved forward in all."""
        return timedelta(seconds=clock.skipped()) if _active is self else timedelta(0)

    def now(self) -> datetime:
        """Return the time on this clock: the real time plus what was skipped."""
        return clock.now()


_active: TimeMachine | None = None


@contextlib.contextmanager
def time_machine() -> Iterator[TimeMachine]:
    """Let this block move django-durable's clock forward with ``skip()``; real time after it.

    The clock is the process's: the database's ``now()`` in django-durable's SQL, the
    in-process worker's timers and ``ctx.now()`` all follow it. Worker processes started
    apart (``run_workflow_worker``) keep the real time. Also a decorator:
    ``@time_machine()``.
    """
    global _active
    if _active is not None:
        raise DurableError("A time_machine() block is active already: skip() inside it.")
    machine = _active = TimeMachine()
    try:
        yield machine
    finally:
        _active = None
        clock.set_skipped(0.0)


def skip(duration: float | timedelta) -> datetime:
    """Move the clock of the current :func:`time_machine` block forward; return the new time."""
    if _active is None:
        raise DurableError(
            "skip() moves the clock of a time_machine() block, and none is active: "
            "wrap the test in `with time_machine():` (or decorate it with @time_machine())."
        )
    return _active.skip(duration)
