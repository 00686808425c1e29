"""Several worker processes under one: ``run_workflow_worker --processes N``.

One worker is one Python process: its threads share one core. The supervisor starts N
copies of the command as child processes and runs no workflow itself, nor opens a
database connection. It relays their output, each line tagged with the child's number;
passes SIGTERM on for a drain; starts a child that died again, after a back-off; and
exits once every child has exited.

A child drains on every SIGTERM or SIGINT it gets, however many: the supervisor passes
SIGTERM on, and systemd signals every process of the service. Only STOP_NOW, which the
supervisor sends when asked twice or when a drain runs late, stops a child at once. Each
child is started in a process group of its own, so that Ctrl-C in a terminal reaches the
supervisor alone. A child learns its supervisor's pid from the environment and drains by
itself if the supervisor vanishes (``watch_supervisor``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from django.conf import settings
from django.db import connections
from django.utils import autoreload

logger = logging.getLogger("django_durable")

# Seconds before a child that died starts again: doubled after each death, up to the cap,
# and back to the first delay once a child has stayed up for STABLE_AFTER.
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0
# After SIGTERM, seconds beyond the shutdown timeout before the supervisor sends a child
# STOP_NOW (hand your runs back and exit), then seconds before SIGKILL.
STOP_GRACE = 10.0
KILL_AFTER = 5.0
# The supervisor's pid, in each child's environment.
SUPERVISOR_ENV = "DJANGO_DURABLE_SUPERVISOR"
# What the supervisor sends a child to stop it at once. A child drains on every SIGTERM:
# it may get one from the supervisor and one from systemd, which signals the whole group.
STOP_NOW = signal.SIGUSR1

Write = Callable[[str], None]


@dataclasses.dataclass(eq=False)
class _Child:
    """One slot of the supervisor: the process in it now, and its restart back-off."""

    number: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    delay: float = RESTART_DELAY
    restart_at: float | None = None
    done: bool = False  # exited, and will not start again
    status: int | None = None  # its last exit status, once done
    pumps: list[threading.Thread] = dataclasses.field(default_factory=list)


class Supervisor:
    """Runs ``command`` in ``processes`` child processes until they have all exited."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        processes: int,
        burst: bool = False,
        shutdown_timeout: float,
        env: Mapping[str, str] | None = None,
        write_out: Write,
        write_err: Write,
        tick: float = 0.2,
    ) -> None:
        self.command = list(command)
        self.burst = burst
        self.shutdown_timeout = shutdown_timeout
        self.env = {**(os.environ if env is None else env), SUPERVISOR_ENV: str(os.getpid())}
        self.tick = tick
        self._write = {"out": write_out, "err": write_err}
        self._output_lock = threading.Lock()
        self._children = [_Child(number) for number in range(1, processes + 1)]
        self._signals = 0  # signals received; the handler only counts
        self._handled = 0
        self._stop_deadline: float | None = None  # when a child that still drains is late
        self._kill_at: float | None = None  # set once the stop was escalated

    def request_stop(self) -> None:
        """Ask for a drain; asked again, stop at once. Safe to call from a signal handler."""
        self._signals += 1

    def run(self) -> int:
        """Start the children and look after them until all have exited; return the status.

        0 when every child that was running when told to stop (or, with ``burst``, every
        child) exited with status 0; 1 otherwise.
        """
        connections.close_all()  # whatever the system checks opened: the children have theirs
        logger.info(
            "Supervisor %d starting %d worker processes: %s",
            os.getpid(),
            len(self._children),
            shlex.join(self.command),
        )
        for child in self._children:
            self._start(child)
        while not all(child.done for child in self._children):
            time.sleep(self.tick)
            self._handle_signals()
            self._reap()
            self._start_due()
            self._escalate_if_late()
        clean = self._kill_at is None and all(c.status in (0, None) for c in self._children)
        logger.info("Supervisor %d: every worker process has exited", os.getpid())
        return 0 if clean else 1

    # --- children ------------------------------------------------------------------------

    def _start(self, child: _Child) -> None:
        child.restart_at = None
        try:
            proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                process_group=0,  # Ctrl-C reaches the supervisor only; it passes it on
            )
        except OSError:
            logger.exception("Supervisor: could not start worker %d", child.number)
            self._schedule_restart(child, time.monotonic())
            return
        child.proc, child.started_at = proc, time.monotonic()
        assert proc.stdout is not None and proc.stderr is not None  # stdout=PIPE, stderr=PIPE
        prefix = f"[worker {child.number}] "
        child.pumps = [
            threading.Thread(
                target=self._pump, args=(stream, prefix, self._write[name]), daemon=True
            )
            for name, stream in (("out", proc.stdout), ("err", proc.stderr))
        ]
        for pump in child.pumps:
            pump.start()
        logger.info("Supervisor: started worker %d (pid %d)", child.number, proc.pid)

    def _pump(self, stream: IO[bytes], prefix: str, write: Write) -> None:
        """Relay ``stream`` line by line; read it to the end even if writing fails.

        A child whose pipe is no longer read blocks once the pipe is full.
        """
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip("\r\n")
                try:
                    with self._output_lock:
                        write(prefix + line)
                except (OSError, ValueError):  # our own output is gone (a closed pipe)
                    pass

    def _reap(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.proc is None or child.proc.poll() is None:
                continue
            proc, child.proc = child.proc, None
            for pump in child.pumps:
                pump.join(1.0)  # its last lines first, then what the supervisor says
            how, up = _how_it_ended(proc.returncode), now - child.started_at
            if self._stopping:
                # Ended by SIGTERM itself: it was told to stop before it could catch the
                # signal, so before it claimed anything. That is a clean stop too.
                status = 0 if proc.returncode == -signal.SIGTERM else proc.returncode
                if proc.returncode == -signal.SIGTERM:
                    how = "stopped before it had started"
                child.done, child.status = True, status
                log = logger.info if status == 0 else logger.warning
                log("Supervisor: worker %d (pid %d) %s", child.number, proc.pid, how)
            elif self.burst and proc.returncode == 0:
                child.done, child.status = True, 0
                logger.info(
                    "Supervisor: worker %d (pid %d) found nothing left to run (burst mode)",
                    child.number,
                    proc.pid,
                )
            else:
                if up >= STABLE_AFTER:
                    child.delay = RESTART_DELAY
                delay = self._schedule_restart(child, now)
                logger.warning(
                    "Supervisor: worker %d (pid %d) %s after %.1fs; starting it again in %.0fs",
                    *(child.number, proc.pid, how, up, delay),
                )

    def _schedule_restart(self, child: _Child, now: float) -> float:
        """Start ``child`` again after its back-off delay, and double the next one."""
        delay = child.delay
        child.restart_at = now + delay
        child.delay = min(delay * 2, MAX_RESTART_DELAY)
        return delay

    def _start_due(self) -> None:
        now = time.monotonic()
        for child in self._children:
            if child.restart_at is not None and now >= child.restart_at and not self._stopping:
                self._start(child)

    # --- stopping ----------------------------------------------------------------------

    @property
    def _stopping(self) -> bool:
        return self._stop_deadline is not None

    def _handle_signals(self) -> None:
        while self._handled < self._signals:
            self._handled += 1
            if not self._stopping:
                self._stop()
            elif self._kill_at is None:
                self._escalate("asked again")

    def _stop(self) -> None:
        """Pass SIGTERM on: every child drains. Children waiting to start again are done."""
        self._stop_deadline = time.monotonic() + self.shutdown_timeout + STOP_GRACE
        logger.info(
            "Supervisor %d: stopping; each worker drains (up to %.0fs)",
            os.getpid(),
            self.shutdown_timeout,
        )
        for child in self._children:
            if child.proc is None:
                child.restart_at, child.done = None, True
        self._signal_all(signal.SIGTERM)

    def _escalate(self, why: str) -> None:
        """Send STOP_NOW: each child hands its runs back and exits at once."""
        self._kill_at = time.monotonic() + KILL_AFTER
        logger.warning("Supervisor %d: %s; stopping every worker at once", os.getpid(), why)
        self._signal_all(STOP_NOW)

    def _escalate_if_late(self) -> None:
        now = time.monotonic()
        if self._kill_at is not None:
            if now >= self._kill_at:
                self._signal_all(signal.SIGKILL)
        elif self._stop_deadline is not None and now >= self._stop_deadline:
            self._escalate(f"workers still running {self.shutdown_timeout + STOP_GRACE:.0f}s on")

    def _signal_all(self, signum: int) -> None:
        for child in self._children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)


def _how_it_ended(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


# --- the command line of a child ------------------------------------------------------------


def child_command(
    parser: argparse.ArgumentParser, command_name: str, options: Mapping[str, Any]
) -> tuple[list[str], dict[str, str]]:
    """Return the command line and environment of a worker child of this supervisor.

    The same interpreter and entry point as this process when it was started from the
    command line (``manage.py``, ``django-admin`` or ``python -m django``: whatever your
    ``manage.py`` sets up happens in the children too), else ``python -m django``. The
    options are this command's, minus ``--processes``, plus ``--skip-checks``: the
    supervisor ran the system checks once already.
    """
    env = {"PYTHONUNBUFFERED": "1"}  # each line now, not a block at exit
    if settings.SETTINGS_MODULE:
        env["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
    if len(sys.argv) > 1 and sys.argv[1] == command_name:
        whole = [str(arg) for arg in autoreload.get_child_arguments()]
        entry = whole[: len(whole) - len(sys.argv) + 1]  # it ends with sys.argv[1:]
    else:  # called from Python (call_command): give the children this process's path
        entry = [sys.executable, "-m", "django"]
        paths = [path for path in sys.path if path]
        env["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
    args = _forwarded(parser, options, leave_out={"processes"})
    if not options.get("skip_checks"):
        args.append("--skip-checks")
    return [*entry, command_name, *args], env


def _forwarded(
    parser: argparse.ArgumentParser, options: Mapping[str, Any], *, leave_out: set[str]
) -> list[str]:
    """Return the options of ``parser`` that ``options`` sets to other than their default."""
    args: list[str] = []
    for action in parser._actions:
        value = options.get(action.dest, action.default)
        if not action.option_strings or action.dest in leave_out or value == action.default:
            continue
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:  # store_true, store_false, store_const
            if value == action.const:
                args.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value or ():
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


# --- in the child -----------------------------------------------------------------------------


def watch_supervisor(on_gone: Callable[[], None], *, interval: float = 1.0) -> bool:
    """In a child of a supervisor, call ``on_gone`` once if the supervisor goes away.

    A supervisor killed with SIGKILL cannot pass anything on: its children, orphaned,
    drain by themselves instead of running unsupervised. Return whether this process is
    such a child (outside a supervisor, do nothing).
    """
    supervisor = os.environ.pop(SUPERVISOR_ENV, "")  # not for the children of steps
    if not supervisor.isdigit():
        return False

    def watch() -> None:
        while os.getppid() == int(supervisor):
            time.sleep(interval)
        logger.warning("The supervisor (pid %s) is gone: this worker drains and exits", supervisor)
        on_gone()

    threading.Thread(target=watch, name="durable-supervisor-watch", daemon=True).start()
    return True
