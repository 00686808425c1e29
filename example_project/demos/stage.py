"""What a scenario works with: the output, worker processes, waiting, and checking.

A scenario says what it does (``say``), prints what it measured in the database
(``measured``), and checks what its seed promises (``check``): a failed check ends the
scenario with :class:`ScenarioFailed`, and ``manage.py demo`` exits with status 1.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import django_durable as durable
from django_durable.display import summarize

T = TypeVar("T")

# Workers look for due runs this often (SQLite has no NOTIFY to wake them sooner).
POLL_SECONDS = "0.1"
# A worker told to stop (SIGTERM) lets its runs' current steps finish for this long, then
# hands back what still runs; the demo waits that long and a margin for it to exit.
DRAIN_SECONDS = 30
EXIT_MARGIN_SECONDS = 30


class ScenarioFailed(Exception):
    """A scenario saw something other than what its seed promises."""


class Workers:
    """The demo's ``run_workflow_worker`` processes, numbered from 1; each logs to a file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        """Start a worker in the project's directory and environment, with ``options``."""
        command = [sys.executable, "manage.py", "run_workflow_worker"]
        command += ["--poll-interval", POLL_SECONDS, "--shutdown-timeout", str(DRAIN_SECONDS)]
        command += options
        with open(self.log_path(len(self.procs) + 1), "wb") as log:
            proc = subprocess.Popen(
                command, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def log_path(self, number: int) -> Path:
        """Return the log file of worker ``number``."""
        return self.log_dir / f"worker-{number}.log"

    def number(self, proc: subprocess.Popen[bytes]) -> int:
        """Return the number of ``proc`` among the demo's workers (from 1)."""
        return self.procs.index(proc) + 1

    def label(self, pid: int) -> str:
        """Return "worker N (pid P)" for the demo's workers, "pid P" for other processes."""
        for number, proc in enumerate(self.procs, 1):
            if proc.pid == pid:
                return f"worker {number} (pid {pid})"
        return f"pid {pid}"

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill ``proc`` with SIGKILL and reap it."""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, proc: subprocess.Popen[bytes]) -> int:
        """Ask ``proc`` to drain and exit with SIGTERM; return its exit code."""
        proc.send_signal(signal.SIGTERM)
        timeout = DRAIN_SECONDS + EXIT_MARGIN_SECONDS
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR2)  # the worker prints where each thread is
            time.sleep(1)
            log = self.log_path(self.number(proc)).read_text(errors="replace")
            tail = "\n".join(log.splitlines()[-80:])
            raise CommandError(
                f"{self.label(proc.pid)} did not exit within {timeout}s of SIGTERM "
                f"(its drain takes at most {DRAIN_SECONDS}s). The end of its log:\n{tail}"
            ) from None

    def kill_all(self) -> None:
        """Kill every worker still alive: none may outlive the demo, however it ends."""
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)


class Stage:
    """A scenario's view of the demo: say, measure, check, wait, and the workers."""

    def __init__(self, command: BaseCommand, workers: Workers, timeout: float) -> None:
        self.command = command
        self.workers = workers
        self.timeout = timeout
        self.style = command.style
        self._shared: subprocess.Popen[bytes] | None = None

    # --- output ----------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        """Print a line of the scenario's story."""
        self.command.stdout.write(text)

    def heading(self, text: str) -> None:
        """Print a heading line."""
        self.command.stdout.write(self.style.MIGRATE_HEADING(text))

    def measured(self, text: str) -> None:
        """Print a figure the scenario read from the database."""
        self.command.stdout.write(f"  = {text}")

    def check(self, condition: object, message: str) -> None:
        """Fail the scenario, saying ``message``, unless ``condition`` holds."""
        if not condition:
            raise ScenarioFailed(message)

    # --- workers -----------------------------------------------------------------------

    def worker(self) -> subprocess.Popen[bytes]:
        """Return the demo's shared worker, starting it the first time a scenario asks."""
        if self._shared is None or self._shared.poll() is not None:
            self._shared = self.workers.start()
            number = self.workers.number(self._shared)
            self.say(f"(Started worker {number}; log: {self.workers.log_path(number)})")
        return self._shared

    def stop_worker(self) -> None:
        """Stop the shared worker (SIGTERM: it drains and exits), if it runs."""
        if self._shared is not None and self._shared.poll() is None:
            self.workers.terminate(self._shared)
        self._shared = None

    # --- waiting -----------------------------------------------------------------------

    def result(self, handle: durable.RunHandle, timeout: float | None = None) -> Any:
        """Return the run's result once it has finished; fail the scenario if it does not."""
        try:
            return handle.result(timeout=self.timeout if timeout is None else timeout)
        except TimeoutError:
            raise ScenarioFailed(f"Run {handle.id} did not finish: {self.where(handle)}") from None

    def outcome(self, handle: durable.RunHandle, timeout: float | None = None) -> str:
        """Wait until the run has finished, whatever its end; return its status."""
        try:
            handle.wait_finished(timeout=self.timeout if timeout is None else timeout)
        except TimeoutError:
            raise ScenarioFailed(f"Run {handle.id} did not finish: {self.where(handle)}") from None
        return str(handle.status)

    def until(self, condition: Callable[[], T], what: str, timeout: float | None = None) -> T:
        """Return ``condition()`` once it is true; fail the scenario after the timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"Waited in vain for {what}.")
            time.sleep(0.05)

    def waiting(self, handle: durable.RunHandle, timeout: float | None = None) -> str:
        """Wait until the run waits (for an event, a message, a timer); return where it is."""
        self.until(
            lambda: handle.refresh().status == durable.RunStatus.WAITING,
            f"run {handle.id} to wait",
            timeout,
        )
        return self.where(handle)

    @staticmethod
    def where(handle: durable.RunHandle) -> str:
        """Return where the run is, in the admin's words."""
        return summarize(handle.refresh().model).sentence
