"""``manage.py demo [NAME ...] [--list]``: run the seeds' scenarios end to end, in order.

Each scenario prints a heading naming the seed it comes from, what it does, and figures
measured from the database; a scenario that sees something other than what it shows
fails, and the command exits with status 1 after the others have run. Worker processes
are real ``run_workflow_worker`` processes, logging under ``--log-dir``; none outlives
the command, however it ends.
"""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...registry import Scenario, scenarios
from ...stage import ScenarioFailed, Stage, Workers


class Command(BaseCommand):
    """Run every scenario, or those named, each measured from the database."""

    help = (
        "Run the example scenarios of the seeds (Absurd, Polos, DBOS, Edda, pyworkflow) and "
        "a worker killed mid-step, each end to end with real worker processes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "names", nargs="*", metavar="NAME", help="Scenarios to run (default: all, in order)."
        )
        parser.add_argument(
            "--list", action="store_true", help="Name the scenarios and their seeds, then stop."
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            metavar="SECONDS",
            help="How long a scenario may wait for any one thing (default: 60).",
        )
        parser.add_argument(
            "--log-dir",
            type=Path,
            metavar="DIR",
            help="Directory for the workers' logs (default: a new one under the temp directory).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = self.choose(options["names"])
        if options["list"]:
            for number, found in enumerate(chosen, 1):
                self.stdout.write(f"{number:>2}. {found.name:<22} {found.title}  [{found.seed}]")
            return
        log_dir = options["log_dir"] or Path(tempfile.mkdtemp(prefix="durable-demo-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        workers = Workers(log_dir)
        stage = Stage(self, workers, options["timeout"])
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            failed = self.run_all(stage, chosen)
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted. The demo's workers are stopped; its runs stay in the database "
                "and the next worker to start finishes them."
            ) from None
        finally:
            workers.kill_all()
            signal.signal(signal.SIGTERM, previous)
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(chosen)} scenarios failed: {', '.join(failed)}. "
                f"Worker logs: {log_dir}"
            )

    def choose(self, names: list[str]) -> list[Scenario]:
        """Return the scenarios named (all when none is), or say which names are unknown."""
        known = scenarios()
        if not names:
            return known
        by_name = {found.name: found for found in known}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise CommandError(
                f"No scenario named {', '.join(map(repr, unknown))}. "
                f"Known: {', '.join(by_name)} (manage.py demo --list)."
            )
        return [by_name[name] for name in names]

    def run_all(self, stage: Stage, chosen: list[Scenario]) -> list[str]:
        """Run each scenario; return the names of those that failed."""
        failed, started = [], time.monotonic()
        for number, found in enumerate(chosen, 1):
            stage.heading(f"\n{number}. {found.title}")
            stage.say(f"   from {found.seed}")
            if found.own_workers:
                stage.stop_worker()  # its runs are for the workers it starts itself
            began = time.monotonic()
            try:
                found.run(stage)
            except ScenarioFailed as exc:
                failed.append(found.name)
                self.stderr.write(f"Scenario {found.name} FAILED: {exc}")
                continue
            took = time.monotonic() - began
            self.stdout.write(
                self.style.SUCCESS(f"   {found.name}: as its seed shows ({took:.1f}s)")
            )
        stage.stop_worker()
        passed = len(chosen) - len(failed)
        self.stdout.write(
            f"\n{passed} of {len(chosen)} scenarios as their seeds show, "
            f"in {time.monotonic() - started:.1f}s."
        )
        return failed


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception, so that the ``finally`` that kills the workers runs.
    raise SystemExit(128 + signum)
