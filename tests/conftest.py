"""Fixtures: an in-process worker, real worker processes, and waiting helpers.

Runs are driven to their end with the public helpers of ``django_durable.testing``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, connections

from django_durable import Worker
from tests.orphans import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
ON_POSTGRES = os.environ.get("DURABLE_TEST_DB", "sqlite") == "postgres"


def pytest_report_header(config: pytest.Config) -> str:
    return f"django-durable test database: {'PostgreSQL' if ON_POSTGRES else 'SQLite'}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controlling process cleans up once they are all done
    from tests.example_db import drop_template

    drop_template(session.config._tmp_path_factory.getbasetemp())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def example_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The example project's database, migrated once for the session (``tests.example_db``)."""
    from tests.example_db import migrated_template

    return migrated_template(tmp_path_factory)


@pytest.fixture(autouse=True, scope="session")
def _stop_listeners(django_db_setup: Any) -> Iterator[None]:
    # LISTEN connections must be closed before the test database is dropped.
    yield
    from django_durable.store.notify import stop_listeners

    stop_listeners()


def serve(worker: Worker) -> threading.Thread:
    """Run ``worker.run()`` in a thread of this process (it closes its own connections)."""

    def run() -> None:
        try:
            worker.run()
        finally:
            connections.close_all()  # this thread's

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting: {message or predicate}")
        time.sleep(0.05)


@pytest.fixture
def worker() -> Worker:
    return Worker(concurrency=4)


class WorkerProcesses:
    """``run_workflow_worker`` subprocesses on the test database, killed at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def start(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DURABLE_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        log = open(self.log_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", "run_workflow_worker", "-v", "2", *args],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
        self.procs.append(proc)
        return proc

    def signal(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, sig)

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for path in sorted(self.log_dir.glob("worker-*.log"))
        )

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)
        for log in self._logs:
            log.close()


@pytest.fixture
def worker_processes(transactional_db: Any, tmp_path: Path) -> Iterator[WorkerProcesses]:
    procs = WorkerProcesses(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with an empty cache: the admin dashboard keeps counts there
    (core.hour_counts), and the database is emptied between tests."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True, scope="session")
def _flush_by_delete() -> Iterator[None]:
    """On PostgreSQL, empty the tables after a ``transaction=True`` test with DELETE.

    Django flushes with one TRUNCATE of every table, which makes new files for each table
    and index; the tables hold a few rows by then, and DELETE empties them faster (the API
    tests: 24.5 s instead of 28.4 s on an idle machine). It runs in the flush's own
    transaction, and Django's foreign keys are checked at its commit (DEFERRABLE INITIALLY
    DEFERRED), when every table is empty. A flush that resets sequences or cascades keeps
    Django's TRUNCATE.
    """
    if not ON_POSTGRES:
        yield
        return
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade:
            return truncate(
                self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
            )
        return [f"DELETE FROM {self.quote_name(table)};" for table in tables]

    DatabaseOperations.sql_flush = sql_flush
    try:
        yield
    finally:
        DatabaseOperations.sql_flush = truncate
