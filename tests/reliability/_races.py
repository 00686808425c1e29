"""Helpers that force one interleaving of two database sessions, and see it happen.

- ``Racer`` runs a function in a thread, with the thread's own Django connection (closed
  when it ends); ``Holder`` does so inside ``transaction.atomic()`` and keeps the
  transaction, and the locks it took, open until the test commits it.
- ``Pause`` patches a library function so that one thread stops right before (or after)
  calling it, until the test releases it: a hook at the exact point of a race window.
- ``LockWatch`` reads ``pg_stat_activity`` from a session of its own: it waits until a
  backend running a given statement is blocked on a lock (and by whom), so the test knows
  the other session is parked at the exact point, without sleeping and hoping.

Nothing here measures time: waits are bounded by generous timeouts that only catch hangs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections, transaction

from tests.conftest import wait_for

HANG = 60.0  # seconds: only ever reached when something hangs


def report(name: str, **figures: Any) -> str:
    """Print a test's figures on one line, ``RELIABILITY <name>: key=value ...``."""
    parts = " ".join(
        f"{key.replace('_', '-')}={value:.2f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in figures.items()
    )
    line = f"RELIABILITY {name}: {parts}"
    print(f"\n{line}", flush=True)
    return line


def backend_pid() -> int:
    """Return the PostgreSQL backend pid of this thread's connection."""
    connection.ensure_connection()
    return int(connection.connection.info.backend_pid)


class Racer:
    """Runs ``fn`` in a thread named ``name``; ``join()`` returns its result or raises."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self.name = name
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        try:
            self.result = self.body()
        except BaseException as exc:  # handed to join()
            self.error = exc
        finally:
            connections.close_all()
            self.done.set()

    def body(self) -> Any:
        return self.fn()

    def join(self, timeout: float = HANG) -> Any:
        """Wait for the thread; return what ``fn`` returned, or raise what it raised."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"thread {self.name} still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.result


class Holder(Racer):
    """Runs ``fn`` in a transaction that stays open (locks held) until ``commit()``."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.pid = 0
        super().__init__(name, fn)

    def body(self) -> Any:
        with transaction.atomic():
            result = self.fn()
            self.pid = backend_pid() if connection.vendor == "postgresql" else 0
            self.held.set()
            if not self.release.wait(HANG):
                raise TimeoutError("the test never released the transaction")
        return result

    def wait_held(self) -> int:
        """Wait until ``fn`` ran in the open transaction; return its backend pid."""
        wait_for(lambda: self.held.is_set() or self.done.is_set(), HANG, f"{self.name} held")
        if not self.held.is_set():
            self.join()  # raises what went wrong
        return self.pid

    def commit(self) -> Any:
        """End the transaction (commit) and return what ``fn`` returned."""
        self.release.set()
        return self.join()


class Pause:
    """Stops a call of ``owner.name`` from thread ``thread`` until ``release()``.

    It stops once: at the first call, or after letting ``skip`` calls through.
    ``after=False`` stops before the call, ``after=True`` right after it returned (the
    value is in ``value``). ``pid`` is the thread's backend pid while stopped (PostgreSQL),
    for ``LockWatch.blocked(by=...)``.
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        owner: Any,
        name: str,
        *,
        thread: str,
        after: bool = False,
        skip: int = 0,
    ) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self.value: Any = None
        self.pid = 0
        self.skip = skip
        original = getattr(owner, name)

        def patched(*args: Any, **kwargs: Any) -> Any:
            stop = False
            if threading.current_thread().name == thread and not self.reached.is_set():
                stop = self.skip == 0
                self.skip -= 1
            if stop and not after:
                self._stop()
            result = original(*args, **kwargs)
            if stop and after:
                self.value = result
                self._stop()
            return result

        monkeypatch.setattr(owner, name, patched)

    def _stop(self) -> None:
        self.pid = backend_pid() if connection.vendor == "postgresql" else 0
        self.reached.set()
        if not self.go.wait(HANG):
            raise TimeoutError("the test never released the pause")

    def wait(self, racer: Racer | None = None) -> None:
        """Wait until the thread stopped here (fail at once if ``racer`` ended instead)."""

        def stopped() -> bool:
            return self.reached.is_set() or (racer is not None and racer.done.is_set())

        wait_for(stopped, HANG, "the paused thread to arrive")
        if not self.reached.is_set():
            assert racer is not None
            result = racer.join()
            raise AssertionError(
                f"{racer.name} ended without reaching the pause, with {result!r}"
                " (None: the worker caught an error; see the log)"
            )

    def release(self) -> None:
        """Let the stopped thread go on."""
        self.go.set()


class LockWatch:
    """Sees, from a session of its own, which backends wait for a lock, and on whom."""

    def __init__(self) -> None:
        wrapper = connections["default"]
        self.conn = wrapper.get_new_connection(wrapper.get_connection_params())
        self.conn.autocommit = True

    def waiting(self, statement: str) -> list[tuple[int, str, list[int]]]:
        """Return ``(pid, query, blocking pids)`` of backends blocked running ``statement``.

        ``statement`` is a LIKE pattern of the query's text as pg_stat_activity shows it.
        """
        rows = self.conn.execute(
            "SELECT pid, query, pg_blocking_pids(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s",
            [statement],
        ).fetchall()
        return [(int(pid), query, list(blockers)) for pid, query, blockers in rows]

    def blocked(self, statement: str, *, by: int, racer: Racer | None = None) -> int:
        """Wait until a backend running ``statement`` is blocked by backend ``by``; its pid.

        Fails at once if ``racer`` (the thread expected to block) ended instead.
        """

        def found() -> int | None:
            if racer is not None and racer.done.is_set():
                racer.join()
                raise AssertionError(f"{racer.name} ended instead of blocking on {statement}")
            for pid, _query, blockers in self.waiting(statement):
                if by in blockers:
                    return pid
            return None

        return int(wait_for(found, HANG, f"a backend blocked on {statement!r} by {by}"))

    def close(self) -> None:
        self.conn.close()
