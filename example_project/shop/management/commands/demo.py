"""``manage.py demo``: fulfil orders through a worker crash, and measure what happened.

1. Create orders and start a ``shop.fulfill_order`` run for each.
2. Start a worker process; once steps are checkpointed and a step body is executing,
   kill it with SIGKILL: no chance to clean up, as in a crash or an out-of-memory kill.
3. Start a second worker: it takes over the runs when their leases expire and finishes
   them from their checkpoints. Stop it with SIGTERM.
4. Report, from the database, what each run recorded and which process ran each body.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

import django_durable as durable

from ... import measure
from ...models import Order
from ...workflows import fulfill_order

CUSTOMERS = (("Ada Lovelace", "42.00"), ("Grace Hopper", "17.50"), ("Alan Turing", "99.90"))
# Short, so that the second worker takes the runs over soon after the kill.
LEASE_SECONDS = 2
POLL_SECONDS = 0.05
# How long a step body must have been executing before the demo kills its worker.
BUSY_SECONDS = 0.1
NO_BODY = {"sleep": "a durable timer, no body", "uuid": "a value recorded once, no body"}


class Workers:
    """The demo's ``run_workflow_worker`` processes, numbered from 1; each logs to a file."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        """Start a worker with a short lease, in the project's directory and environment."""
        command = [sys.executable, "manage.py", "run_workflow_worker"]
        command += ["--lease", str(LEASE_SECONDS), "--poll-interval", "0.2"]
        with open(self.log_path(len(self.procs) + 1), "wb") as log:
            proc = subprocess.Popen(
                command, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def log_path(self, number: int) -> Path:
        """Return the log file of worker ``number``."""
        return self.log_dir / f"worker-{number}.log"

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

    def terminate(self, proc: subprocess.Popen[bytes], timeout: float) -> int:
        """Ask ``proc`` to drain and exit with SIGTERM; return its exit code."""
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise CommandError(f"The worker did not exit within {timeout}s of SIGTERM.") from None

    def kill_all(self) -> None:
        """Kill every worker still alive: none may outlive the demo, however it ends."""
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)


class Command(BaseCommand):
    """Show that workflow runs survive a killed worker, with figures from the database."""

    help = (
        "Start order-fulfilment runs, SIGKILL the worker executing them mid-step, let a "
        "second worker finish them, and report what ran where."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="Seconds to wait for each phase."
        )
        parser.add_argument(
            "--log-dir",
            type=Path,
            help="Directory for the workers' logs (default: a new one under the temp directory).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        orders = self.start_runs()
        log_dir = options["log_dir"] or Path(tempfile.mkdtemp(prefix="durable-demo-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        workers = Workers(log_dir)
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self.crash_first_worker(workers, orders, options["timeout"])
            self.finish_with_second_worker(workers, orders, options["timeout"])
        except KeyboardInterrupt:
            raise CommandError(
                "Interrupted. The demo's workers are stopped; its runs stay in the database "
                "and the next worker to start finishes them."
            ) from None
        finally:
            workers.kill_all()
            signal.signal(signal.SIGTERM, previous)
        runs = measure.collect(orders)
        self.report(runs, workers)
        summary = measure.summarise(runs)
        self.conclude(summary, time.monotonic() - started, workers)

    # --- the experiment ------------------------------------------------------------

    def start_runs(self) -> dict[str, Order]:
        """Create an order per customer and start its fulfilment; return run id to order."""
        orders = {}
        for customer, amount in CUSTOMERS:
            order = Order.objects.create(customer=customer, amount=amount)
            handle = fulfill_order.start(order.pk)
            orders[handle.id] = order
            self.say(f"Order #{order.pk} for {customer} ({amount}): started run {handle.id}")
        return orders

    def crash_first_worker(
        self, workers: Workers, orders: dict[str, Order], timeout: float
    ) -> None:
        """Start a worker and SIGKILL it mid-step; say what was done at that moment."""
        proc = workers.start()
        self.heading(f"\nStarted {workers.label(proc.pid)}; log: {workers.log_path(1)}")
        self.wait_for_crash_point(workers, proc, list(orders), timeout)
        workers.kill(proc)
        run_ids = list(orders)
        self.heading(
            f"SIGKILL sent to {workers.label(proc.pid)} after "
            f"{measure.checkpoints_done(run_ids)} steps were checkpointed. At that moment:"
        )
        in_flight = set(measure.bodies_in_flight(run_ids))
        for fact in measure.collect(orders):
            self.say(f"  order #{fact.order.pk}: {self._moment(fact, in_flight)}")

    def _moment(self, fact: measure.RunFacts, in_flight: set[tuple[str, str]]) -> str:
        """Describe where a run was when the worker died."""
        text = f"checkpointed {', '.join(fact.checkpointed) or 'nothing'}"
        executing = [step for run_id, step in in_flight if run_id == fact.run_id]
        if executing:
            text += f"; executing {', '.join(executing)} (no checkpoint yet)"
        elif fact.status == durable.RunStatus.WAITING:
            text += f"; waiting ({fact.waiting_for})"
        elif fact.status == durable.RunStatus.RUNNING:
            text += "; running (its current step has committed nothing)"
        return text

    def wait_for_crash_point(
        self,
        workers: Workers,
        proc: subprocess.Popen[bytes],
        run_ids: list[str],
        timeout: float,
    ) -> None:
        """Wait until 2 steps are checkpointed and a plain step body is busy working.

        A body must be seen executing for ``BUSY_SECONDS``: one that fails at once (the
        first payment attempt) would be over before the signal lands.
        """
        deadline = time.monotonic() + timeout
        first_seen: dict[tuple[str, str, int], float] = {}
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CommandError(
                    f"Worker 1 exited on its own (code {proc.returncode}); "
                    f"see {workers.log_path(1)}."
                )
            now = time.monotonic()
            if measure.checkpoints_done(run_ids) >= 2:
                busy = measure.bodies_in_flight(run_ids).items()
                seen = {(*key, count): first_seen.get((*key, count), now) for key, count in busy}
                if any(now - since >= BUSY_SECONDS for since in seen.values()):
                    return
                first_seen = seen
            time.sleep(POLL_SECONDS)
        raise CommandError(f"No step was executing within {timeout}s; see {workers.log_path(1)}.")

    def finish_with_second_worker(
        self, workers: Workers, orders: dict[str, Order], timeout: float
    ) -> None:
        """Start a second worker, wait for every run to end, then stop it with SIGTERM."""
        proc = workers.start()
        self.heading(f"\nStarted {workers.label(proc.pid)}; log: {workers.log_path(2)}")
        self.say(
            f"  It takes over the killed worker's runs once their {LEASE_SECONDS}s "
            "leases expire, and resumes each from its last checkpoint."
        )
        deadline = time.monotonic() + timeout
        for run_id in orders:
            try:
                durable.get_run(run_id).result(timeout=max(0.1, deadline - time.monotonic()))
            except (durable.WorkflowFailed, TimeoutError) as exc:
                self.stderr.write(str(exc))  # the report shows the run's state
        code = workers.terminate(proc, timeout=30)
        self.say(f"SIGTERM sent to {workers.label(proc.pid)}: it drained and exited ({code=}).")

    # --- the report ----------------------------------------------------------------

    def report(self, runs: list[measure.RunFacts], workers: Workers) -> None:
        """Print each run's outcome and recorded operations, with who executed them."""
        self.heading("\nWhat the database recorded")
        for run in runs:
            status = self._status_style(run)(run.status)
            self.say(f"\nOrder #{run.order.pk} ({run.order.status}), run {run.run_id}: {status}")
            if run.completed:
                self.say(f"  result: {json.dumps(run.result, default=str)}")
            else:
                error = run.error or {}
                self.say(f"  error: {error.get('type')}: {error.get('message')}")
            self.say(f"  {'pos':>3}  {'kind':<5}  {'name':<18}  {'attempts':>8}  executed by")
            for step in run.steps:
                self.say(
                    f"  {step.position:>3}  {step.kind:<5}  {step.name:<18}  "
                    f"{step.attempts:>8}  {self._executed_by(step, workers)}"
                )
        self.say(
            "\nAn atomic step logs its execution in the step's own transaction: an execution "
            "cut short by the kill rolled back with it, so only the committed one is listed."
        )

    def _status_style(self, run: measure.RunFacts) -> Any:
        return self.style.SUCCESS if run.completed else self.style.ERROR

    def _executed_by(self, step: measure.StepFacts, workers: Workers) -> str:
        if not step.has_body:
            return f"- ({NO_BODY.get(step.kind, 'no body')})"
        # Consecutive executions by one process are shown once, with a count.
        groups = [(pid, len(list(runs))) for pid, runs in itertools.groupby(step.pids)]
        text = ", then ".join(
            workers.label(pid) + (f" x{count}" if count > 1 else "") for pid, count in groups
        )
        notes = []
        if step.attempts > 1:
            notes.append(_plural(step.attempts - 1, "failed attempt") + " retried")
        if step.interrupted:
            notes.append("re-ran after the kill")
        if step.atomic:
            notes.append("atomic")
        return text + (f"  [{'; '.join(notes)}]" if notes else "")

    def conclude(self, summary: measure.Summary, seconds: float, workers: Workers) -> None:
        """Print the summary line; fail if a run did not complete or a write was duplicated."""
        completed = (
            f"{summary.runs} runs"
            if summary.completed == summary.runs
            else f"{summary.completed} of {summary.runs} runs"
        )
        line = (
            f"{completed} completed after a SIGKILL; {summary.checkpoints} steps checkpointed; "
            f"{_plural(summary.interrupted, 'step body', 'step bodies')} re-ran after the kill "
            "(at-least-once), "
            f"{summary.duplicated} atomic writes duplicated"
        )
        self.heading(f"\nSummary ({seconds:.1f}s)")
        self.say(line)
        self.say(
            f"{_plural(summary.retried, 'failed attempt')} retried by a RetryPolicy; "
            f"{summary.shipped} of {summary.runs} orders shipped with their run's tracking number."
        )
        if not summary.ok:
            raise CommandError(f"The demo failed: {line}. Worker logs: {workers.log_dir}")
        self.stdout.write(self.style.SUCCESS("Durable: nothing lost, nothing written twice."))

    # --- output ----------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Print a line."""
        self.stdout.write(text)

    def heading(self, text: str) -> None:
        """Print a heading line."""
        self.stdout.write(self.style.MIGRATE_HEADING(text))


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception, so that the ``finally`` that kills the workers runs.
    raise SystemExit(128 + signum)
