"""Chaos machinery shared by the reliability tests.

- ``worker_pool``: makes a ``WorkerPool``, real ``run_workflow_worker`` processes on the test
  database that it starts, kills (SIGKILL, SIGSTOP/SIGCONT, SIGTERM) and restarts, keeping
  count of what it did;
- ``report()``: prints a test's figures on one line, ``RELIABILITY <name>: key=value ...``
  (``make chaos`` runs with ``-s``; ``make test`` shows them when a test fails);
- helpers that read the database and the processes: its clock, execution counts, RSS, and
  connections per worker on PostgreSQL.

Tests assert on counts and states read from the database, never on timings: the machine is
small and shared. Timeouts only bound a hang.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_durable.models import WorkerProcess
from tests.conftest import ON_POSTGRES, WorkerProcesses, wait_for
from tests.testapp.models import Execution

__all__ = [
    "ON_POSTGRES",
    "WorkerPool",
    "backends_per_application",
    "db_now",
    "executions",
    "process_state",
    "report",
    "rss_kib",
    "wait_for",
]


def report(name: str, **figures: Any) -> str:
    """Print a test's figures on one line with a clear prefix, and return the line."""
    parts = " ".join(
        f"{key.replace('_', '-')}={value:.2f}"
        if isinstance(value, float)
        else f"{key.replace('_', '-')}={value}"
        for key, value in figures.items()
    )
    line = f"RELIABILITY {name}: {parts}"
    print(f"\n{line}", flush=True)
    return line


def db_now() -> datetime:
    """Return the database's time (the process's on SQLite, which has no clock of its own)."""
    if not ON_POSTGRES:
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        return cursor.fetchone()[0]


def executions(**filters: Any) -> Counter[tuple[str, str]]:
    """Return how many times each (run, label) step body ran, from ``Execution`` rows."""
    rows = Execution.objects.filter(**filters).values_list("run_id", "label")
    return Counter(rows)


def rss_kib(pid: int) -> int | None:
    """Return the resident memory of a process in KiB (``None`` if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def process_state(pid: int) -> str:
    """Return the state letter of a process from ``/proc`` (``T`` when stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def sqlite_writable(path: str) -> bool:
    """Return whether the SQLite database at ``path`` can take a write now (no one holds one)."""
    probe = sqlite3.connect(path, timeout=0.5, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


def backends_per_application(prefix: str) -> dict[str, int]:
    """Return PostgreSQL's connections by ``application_name``, for names with ``prefix``.

    Worker processes of a pool get ``PGAPPNAME=<pool name>-<slot>-<generation>``, which
    libpq sends as the connection's application name: this counts each one's connections.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s "
            "GROUP BY application_name",
            [f"{prefix}%"],
        )
        return dict(cursor.fetchall())


class WorkerPool:
    """``size`` worker processes on the test database, one per slot, that tests torment.

    ``kill()`` SIGKILLs the worker of a slot and starts a new one there (as a process
    manager would); ``chaos()`` does that to one slot after another at an interval until a
    condition holds; ``pause()``/``resume()`` SIGSTOP and SIGCONT one; ``stop()`` SIGTERMs
    them all and returns their exit codes. ``killed`` lists every pid killed, in order, and
    ``kill_times`` says when each one was killed. Extra ``DJANGO_DURABLE`` settings for the
    workers go through ``DURABLE_TEST_SETTINGS`` (read by tests/settings.py).
    """

    def __init__(
        self,
        processes: WorkerProcesses,
        size: int,
        args: tuple[str, ...] = (),
        *,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        name: str = "durable-pool",
    ) -> None:
        self.processes = processes
        self.env = env or {}
        self.size = size
        self.args = args
        self.settings = settings or {}
        self.name = name
        self.slots: list[subprocess.Popen[bytes] | None] = [None] * size
        self.started: list[subprocess.Popen[bytes]] = []
        self.killed: list[int] = []
        # pid -> just before the SIGKILL, and once it was gone (the clock of this machine's
        # processes, as in ``Execution.created_at``)
        self.kill_times: dict[int, tuple[datetime, datetime]] = {}
        self.app_names: dict[int, str] = {}  # pid -> its connections' application_name
        self._generation = 0
        self._next_victim = 0

    # --- starting ----------------------------------------------------------------------

    def start(self) -> WorkerPool:
        """Start a worker in every empty slot; return the pool."""
        for slot in range(self.size):
            if self.slots[slot] is None:
                self._spawn(slot)
        return self

    def _spawn(self, slot: int) -> subprocess.Popen[bytes]:
        self._generation += 1
        env = {**self.env, "PGAPPNAME": f"{self.name}-{slot}-{self._generation}"}
        if self.settings:
            env["DURABLE_TEST_SETTINGS"] = json.dumps(self.settings)
        proc = self.processes.start(*self.args, extra_env=env)
        self.app_names[proc.pid] = env["PGAPPNAME"]
        self.slots[slot] = proc
        self.started.append(proc)
        return proc

    def registered(self) -> bool:
        """Return whether every live worker has recorded itself in the database (started up)."""
        pids = {proc.pid for proc in self.alive}
        return pids <= set(WorkerProcess.objects.filter(pid__in=pids).values_list("pid", flat=True))

    def wait_registered(self, timeout: float = 60.0) -> None:
        """Wait until every live worker has recorded itself in the database."""
        self.wait(self.registered, timeout, f"{self.size} workers registered")

    @property
    def alive(self) -> list[subprocess.Popen[bytes]]:
        """Return the workers that are still running."""
        return [proc for proc in self.slots if proc is not None and proc.poll() is None]

    @property
    def pids(self) -> set[int]:
        """Return the pid of every worker this pool ever started."""
        return {proc.pid for proc in self.started}

    def worker_id(self, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str:
        """Return the worker id (``claimed_by``) of a worker process, once it registered."""
        return wait_for(
            lambda: WorkerProcess.objects.filter(pid=proc.pid).values_list("id", flat=True).first(),
            timeout,
            f"worker {proc.pid} registered",
        )

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """``wait_for(predicate)``; on a time-out the failure shows the workers' logs."""
        try:
            return wait_for(predicate, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        """Return the logs of every worker process (for assertion messages)."""
        return self.processes.logs()

    # --- tormenting --------------------------------------------------------------------

    def kill(self, slot: int | None = None, *, restart: bool = True) -> int:
        """SIGKILL the worker of ``slot`` (the next one in turn if None); return its pid.

        With ``restart``, a new worker takes the slot at once.
        """
        if slot is None:
            slot = self._next_victim
            self._next_victim = (slot + 1) % self.size
        proc = self.slots[slot]
        if proc is not None:
            if proc.poll() is None:
                before = timezone.now()
                os.kill(proc.pid, signal.SIGKILL)
                self.killed.append(proc.pid)
                proc.wait(30)
                self.kill_times[proc.pid] = (before, timezone.now())  # it is gone by then
            proc.wait(30)
            self.slots[slot] = None
        if restart:
            self._spawn(slot)
        return proc.pid if proc is not None else 0

    def supervise(self) -> int:
        """Start a new worker in each slot whose worker exited; return how many."""
        restarted = 0
        for slot, proc in enumerate(self.slots):
            if proc is not None and proc.poll() is not None:
                self._spawn(slot)
                restarted += 1
        return restarted

    def chaos(
        self,
        *,
        until: Callable[[], bool],
        interval: float = 1.0,
        timeout: float = 300.0,
        on_tick: Callable[[], None] | None = None,
    ) -> int:
        """Kill and restart one worker every ``interval`` s, in turn, until ``until()``.

        The kills land blind, on whatever the worker is doing. A kill waits until every
        worker has started up (registered), so the workers get time to work however slowly
        a loaded machine starts them: the kills are paced by the workers, not only by the
        clock. Also restarts workers that died on their own. Returns the number of kills;
        fails if ``until()`` is still false after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        kills = 0
        next_kill = time.monotonic() + interval
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"Chaos: not done after {timeout}s ({kills} kills)")
            self.supervise()
            if on_tick is not None:
                on_tick()
            if time.monotonic() >= next_kill and self.registered():
                self.kill()
                kills += 1
                next_kill = time.monotonic() + interval
            time.sleep(0.05)
        return kills

    def pause(self, proc: subprocess.Popen[bytes], tries: int = 50) -> None:
        """SIGSTOP a worker and wait until it is stopped: it stalls, holding what it held,
        except a write lock on SQLite.

        SQLite has one writer: a worker frozen inside a write (a checkpoint, an atomic step)
        would lock every other process out of the database until it is resumed, which no
        real stall does to PostgreSQL. So on SQLite this stops the worker, tries to take the
        write lock itself, and if it cannot, lets the worker go on for a moment and tries
        again (bounded). PostgreSQL locks rows, not the database: one stop.
        """
        for _ in range(tries):
            os.kill(proc.pid, signal.SIGSTOP)
            wait_for(lambda: process_state(proc.pid) == "T", 10, f"worker {proc.pid} stopped")
            if connection.vendor != "sqlite" or sqlite_writable(connection.settings_dict["NAME"]):
                return
            self.resume(proc)
            time.sleep(0.05)
        raise AssertionError(f"worker {proc.pid} held a write each time it was stopped")

    def resume(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGCONT a stopped worker."""
        os.kill(proc.pid, signal.SIGCONT)

    def stop(self, timeout: float = 60.0) -> list[int]:
        """SIGTERM every live worker and wait; return their exit codes (fails on a hang).

        Waits for a just-started worker to register first: until it has installed its
        signal handlers, SIGTERM would simply end it (exit code -15).
        """
        self.wait_registered()
        live = self.alive
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in live:
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                # Where is each of its threads? A worker prints that on SIGUSR2 and goes on.
                proc.send_signal(signal.SIGUSR2)
                time.sleep(2)
                raise AssertionError(
                    f"worker {proc.pid} did not exit within {timeout}s of SIGTERM; "
                    f"the workers' logs, with its stacks at the end:\n{self.logs()[-12000:]}"
                ) from None
        self.slots = [None] * self.size
        return codes


@pytest.fixture
def worker_pool(worker_processes: WorkerProcesses) -> Callable[..., WorkerPool]:
    """Make ``WorkerPool(size, *args, settings=..., env=...)``; killed at teardown."""
    pools: list[WorkerPool] = []

    def make(
        size: int,
        *args: str,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> WorkerPool:
        name = f"durable-pool{len(pools)}"
        pool = WorkerPool(worker_processes, size, args, settings=settings, env=env, name=name)
        pools.append(pool)
        return pool

    return make
