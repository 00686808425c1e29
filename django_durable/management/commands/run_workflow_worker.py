"""``manage.py run_workflow_worker``: execute workflow runs until told to stop."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.utils import autoreload

from django_durable.core.conf import get_settings
from django_durable.worker.supervisor import (
    STOP_NOW,
    Supervisor,
    child_command,
    watch_supervisor,
)
from django_durable.worker.worker import Worker, check_numbers

logger = logging.getLogger("django_durable")

# The signal that makes a worker print every thread's stack (STOP_NOW is SIGUSR1).
DUMP_STACKS = signal.SIGUSR2
# The status with which Django's reloader ends its child when a file changes.
RELOAD_STATUS = 3
# This command's name, which the children of --processes run.
COMMAND = __name__.rpartition(".")[2]


class Command(BaseCommand):
    """Run a workflow worker; SIGTERM or Ctrl-C drains it, a second one stops it at once."""

    help = (
        "Execute durable workflow runs. SIGTERM/SIGINT: stop claiming, let in-flight runs "
        "finish their current step and hand them back, then exit 0. A second signal exits "
        "at once (runs are handed back; leases expire otherwise). With --processes N, a "
        "supervisor runs N such workers and passes the signals on."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            "-q",
            action="append",
            dest="queues",
            metavar="QUEUE",
            help="Queue to serve (repeat for several). Default: DJANGO_DURABLE['DEFAULT_QUEUE'].",
        )
        parser.add_argument(
            "--concurrency",
            "-c",
            type=int,
            metavar="N",
            help="Runs executed at once. Default: DJANGO_DURABLE['WORKER_CONCURRENCY'].",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no run is ready and none is in flight.",
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            metavar="SECONDS",
            help="Seconds between polls. Default: DJANGO_DURABLE['POLL_INTERVAL'].",
        )
        parser.add_argument(
            "--lease",
            type=float,
            metavar="SECONDS",
            help="Lease length in seconds. Default: DJANGO_DURABLE['LEASE_SECONDS'].",
        )
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            metavar="SECONDS",
            help="Seconds to wait for in-flight steps after SIGTERM. "
            "Default: DJANGO_DURABLE['SHUTDOWN_TIMEOUT'].",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Development: restart the worker when a Python file it imported changes, as "
            "runserver does. Its runs are handed back first. Not with --burst.",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            metavar="N",
            help="Start N worker processes with these options, and supervise them: restart "
            "one that dies, pass SIGTERM on for a drain. Default 1: this process is the worker.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
        if options["reload"] and options["burst"]:
            raise CommandError(
                "--reload restarts a worker that runs until it is stopped, and --burst "
                "stops it when nothing is left to run: give one or the other."
            )
        if options["processes"] < 1:
            raise CommandError(f"--processes must be 1 or more, not {options['processes']}.")
        if options["processes"] > 1:
            sys.exit(self._supervise(options))
        try:
            worker = Worker(
                queues=options["queues"],
                concurrency=options["concurrency"],
                burst=options["burst"],
                poll_interval=options["poll_interval"],
                lease_seconds=options["lease"],
                shutdown_timeout=options["shutdown_timeout"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not options["reload"]:
            self._serve(worker)
        elif os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
            self._serve_until_a_change(worker)
        else:
            sys.exit(self._restart_on_changes())

    def _serve(self, worker: Worker) -> None:
        """Work until a signal; the first drains the worker, a second stops it at once.

        A child of ``--processes`` drains on every SIGTERM or SIGINT: its supervisor passes
        SIGTERM on, and systemd (or anyone signalling the whole group) may send one as well.
        Only the supervisor's STOP_NOW stops it at once.
        """
        supervised = watch_supervisor(worker.request_stop)
        signals_seen = 0
        forced = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only set flags here: real work in a signal handler can deadlock the worker.
            nonlocal signals_seen, forced
            signals_seen += 1
            if signum == STOP_NOW or (signals_seen > 1 and not supervised):
                forced = True
                worker.force_stop()
                # If the main loop is stuck in a database call, leave anyway.
                threading.Timer(2.0, os._exit, (1,)).start()
            else:
                worker.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if supervised:
            signal.signal(STOP_NOW, on_signal)
        # `kill -USR2 PID`: every thread's stack to stderr, and the worker goes on (a worker
        # that seems stuck says where; faulthandler writes from C, safe in any state).
        faulthandler.register(DUMP_STACKS, all_threads=True)
        clean = worker.run()
        self.stdout.write(f"Worker {worker.id} stopped.")
        if forced or not clean:
            self._leave_now(1 if forced else 0)

    # --- --processes ---------------------------------------------------------------------

    def _supervise(self, options: dict[str, Any]) -> int:
        """Run ``--processes`` workers as child processes until they exit; return the status."""
        if options["reload"]:
            raise CommandError(
                "--reload restarts one worker when a file changes: run it without --processes."
            )
        _check_numbers(options)  # here once, rather than in every child, again and again
        shutdown_timeout = options["shutdown_timeout"]
        if shutdown_timeout is None:
            shutdown_timeout = get_settings().SHUTDOWN_TIMEOUT
        command, env = child_command(self.create_parser("", COMMAND), COMMAND, options)
        supervisor = Supervisor(
            command,
            processes=options["processes"],
            burst=options["burst"],
            shutdown_timeout=shutdown_timeout,
            env={**os.environ, **env},
            write_out=_relay(self.stdout),
            write_err=_relay(self.stderr),
        )

        def on_signal(signum: int, frame: FrameType | None) -> None:
            supervisor.request_stop()  # only counts: the supervisor's loop does the rest

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        return supervisor.run()

    # --- --reload ----------------------------------------------------------------------
    #
    # Two processes, as with runserver. The first starts this command again as a child
    # (RUN_MAIN=true in its environment), and starts it again each time it exits with
    # status 3. The child runs Django's reloader in its main thread and the worker in a
    # thread of its own. When a file changes, the reloader raises SystemExit(3) in the main
    # thread: the child then drains its worker, exactly as on SIGTERM, and exits with 3.

    def _restart_on_changes(self) -> int:
        """Run this command as a child process, again after each change; return its status.

        Django's own first process (``autoreload.restart_with_reloader()``) kills its child
        with SIGKILL when it gets SIGTERM, and 0.25 seconds after Ctrl-C: the worker's runs
        would stay claimed until their leases expired. This one passes SIGTERM on and waits
        for the child to drain. Ctrl-C it does not pass on: the terminal sends it to the
        child too, and a second signal would make the child stop at once.
        """
        child: subprocess.Popen[bytes] | None = None
        stopping = waiting = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True
            if waiting:  # for a change, after a crash: no worker to drain
                raise SystemExit(0)
            if signum == signal.SIGTERM and child is not None:
                child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
        while True:
            child = subprocess.Popen(autoreload.get_child_arguments(), env=environ, close_fds=False)
            if stopping:  # told to stop while the child was starting
                child.send_signal(signal.SIGTERM)
            status = child.wait()
            if status == RELOAD_STATUS and not stopping:
                continue
            if stopping or status == 0:
                return status if status >= 0 else 128 - status
            logger.warning(
                "The worker exited with status %s; it starts again when a file changes.", status
            )
            waiting = True
            _wait_for_a_change()
            waiting = False

    def _serve_until_a_change(self, worker: Worker) -> None:
        """Be the reloader's child: work in a thread until a change or a signal, then drain."""
        done = threading.Event()
        clean = True
        changed: list[str] = []

        def work() -> None:
            nonlocal clean
            try:
                clean = worker.run()
            finally:
                done.set()

        def watching(sender: Any, **kwargs: Any) -> None:
            logger.info("Worker %s restarts when a Python file it imported changes", worker.id)

        def remember(sender: Any, file_path: Any, **kwargs: Any) -> None:
            changed.append(str(file_path))  # returns None: the reload goes ahead

        autoreload.autoreload_started.connect(watching, weak=False)
        autoreload.file_changed.connect(remember, weak=False)
        status = 0
        try:
            # Returns after Ctrl-C; SystemExit(3) on a change, SystemExit(0) on SIGTERM.
            autoreload.run_with_reloader(work)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        if status == RELOAD_STATUS:
            what = changed[-1] if changed else "A file"
            logger.info(
                "%s changed: worker %s hands its runs back and starts again", what, worker.id
            )
        else:
            logger.info("Worker %s stops: its runs are handed back", worker.id)
        worker.request_stop()
        try:
            done.wait()
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl-C or SIGTERM: stop now
            worker.force_stop()
            done.wait(2.0)
            status, clean = 1, False
        self.stdout.write(f"Worker {worker.id} stopped.")
        if not clean:
            self._leave_now(status)
        sys.exit(status)

    def _leave_now(self, status: int) -> None:
        # Threads still inside a step body cannot be joined; their runs were handed
        # back (or their leases will expire), so leave without waiting for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    def _configure_logging(self, verbosity: int) -> None:
        if logger.handlers or logging.getLogger().handlers:
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))


def _check_numbers(options: dict[str, Any]) -> None:
    """Refuse the values the Worker refuses, with its words."""
    try:
        check_numbers(
            concurrency=options["concurrency"],
            poll_interval=options["poll_interval"],
            lease_seconds=options["lease"],
            shutdown_timeout=options["shutdown_timeout"],
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from exc


def _relay(stream: OutputWrapper) -> Callable[[str], None]:
    """Return a writer of the children's lines to ``stream``, each at once, uncoloured."""

    def write(line: str) -> None:
        stream.write(line, style_func=_as_is)  # not in the colour of errors
        stream.flush()  # not held back in a buffer when the output is a pipe (journald)

    return write


def _as_is(text: str) -> str:
    return text


def _wait_for_a_change() -> None:
    """Return when a Python file this process imported changes, as Django's reloader sees it."""
    try:
        autoreload.get_reloader().run_loop()
    except SystemExit as exc:  # autoreload.trigger_reload()
        if exc.code != RELOAD_STATUS:
            raise
