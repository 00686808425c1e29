"""``manage.py run_workflow_worker``: execute workflow runs until told to stop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_durable.worker import Worker

logger = logging.getLogger("django_durable")


class Command(BaseCommand):
    """Run a workflow worker; SIGTERM or Ctrl-C drains it, a second one stops it at once."""

    help = (
        "Execute durable workflow runs. SIGTERM/SIGINT: stop claiming, let in-flight runs "
        "finish their current step and hand them back, then exit 0. A second signal exits "
        "at once (runs are handed back; leases expire otherwise)."
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
            help="Runs executed at once. Default: DJANGO_DURABLE['WORKER_CONCURRENCY'].",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Exit once no run is ready and none is in flight.",
        )
        parser.add_argument("--poll-interval", type=float, help="Seconds between polls.")
        parser.add_argument("--lease", type=float, help="Lease length in seconds.")
        parser.add_argument(
            "--shutdown-timeout",
            type=float,
            help="Seconds to wait for in-flight steps after SIGTERM.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._configure_logging(options["verbosity"])
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
        signals_seen = 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Only set flags here: real work in a signal handler can deadlock the worker.
            nonlocal signals_seen
            signals_seen += 1
            if signals_seen == 1:
                worker.request_stop()
            else:
                worker.force_stop()
                # If the main loop is stuck in a database call, leave anyway.
                threading.Timer(2.0, os._exit, (1,)).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        clean = worker.run()
        self.stdout.write(f"Worker {worker.id} stopped.")
        if signals_seen > 1 or not clean:
            # Threads still inside a step body cannot be joined; their runs were handed
            # back (or their leases will expire), so leave without waiting for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1 if signals_seen > 1 else 0)

    def _configure_logging(self, verbosity: int) -> None:
        if logger.handlers or logging.getLogger().handlers:
            return
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
