"""The worker killed mid-step: order fulfilment runs survive a SIGKILL, measured.

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
import subprocess
import time

import django_durable as durable
from example_project.demos.registry import scenario
from example_project.demos.stage import ScenarioFailed, Stage, Workers

from . import measure
from .models import Order
from .workflows import fulfill_order

CUSTOMERS = (("Ada Lovelace", "42.00"), ("Grace Hopper", "17.50"), ("Alan Turing", "99.90"))
# Short, so that the second worker takes the runs over soon after the kill.
LEASE_SECONDS = 2
POLL_SECONDS = 0.05
# How long a step body must have been executing before the demo kills its worker.
BUSY_SECONDS = 0.1
NO_BODY = {"sleep": "a durable timer, no body", "uuid": "a value recorded once, no body"}


@scenario(
    "worker-killed",
    seed="django-durable's own: at-least-once steps, exactly-once atomic steps",
    title="A worker killed mid-step: order fulfilment resumes from its checkpoints",
    order=900,
    own_workers=True,
)
def worker_killed(stage: Stage) -> None:
    """SIGKILL the worker running three fulfilments, finish them with another, report."""
    started = time.monotonic()
    orders = start_runs(stage)
    crash_first_worker(stage, orders)
    finish_with_second_worker(stage, orders)
    runs = measure.collect(orders)
    report(stage, runs)
    conclude(stage, measure.summarise(runs), time.monotonic() - started)


def start_runs(stage: Stage) -> dict[str, Order]:
    """Create an order per customer and start its fulfilment; return run id to order."""
    orders = {}
    for customer, amount in CUSTOMERS:
        order = Order.objects.create(customer=customer, amount=amount)
        handle = fulfill_order.start(order.pk)
        orders[handle.id] = order
        stage.say(f"Order #{order.pk} for {customer} ({amount}): started run {handle.id}")
    return orders


def crash_first_worker(stage: Stage, orders: dict[str, Order]) -> None:
    """Start a worker and SIGKILL it mid-step; say what was done at that moment."""
    workers = stage.workers
    proc = workers.start("--lease", str(LEASE_SECONDS))
    number = workers.number(proc)
    stage.heading(f"\nStarted {workers.label(proc.pid)}; log: {workers.log_path(number)}")
    wait_for_crash_point(stage, proc, list(orders))
    workers.kill(proc)
    run_ids = list(orders)
    stage.heading(
        f"SIGKILL sent to {workers.label(proc.pid)} after "
        f"{measure.checkpoints_done(run_ids)} steps were checkpointed. At that moment:"
    )
    in_flight = set(measure.bodies_in_flight(run_ids))
    for fact in measure.collect(orders):
        stage.say(f"  order #{fact.order.pk}: {_moment(fact, in_flight)}")


def _moment(fact: measure.RunFacts, in_flight: set[tuple[str, str]]) -> str:
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


def wait_for_crash_point(stage: Stage, proc: subprocess.Popen[bytes], run_ids: list[str]) -> None:
    """Wait until 2 steps are checkpointed and a plain step body is busy working.

    A body must be seen executing for ``BUSY_SECONDS``: one that fails at once (the
    first payment attempt) would be over before the signal lands.
    """
    log = stage.workers.log_path(stage.workers.number(proc))
    deadline = time.monotonic() + stage.timeout
    first_seen: dict[tuple[str, str, int], float] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ScenarioFailed(
                f"The worker exited on its own (code {proc.returncode}); see {log}."
            )
        now = time.monotonic()
        if measure.checkpoints_done(run_ids) >= 2:
            busy = measure.bodies_in_flight(run_ids).items()
            seen = {(*key, count): first_seen.get((*key, count), now) for key, count in busy}
            if any(now - since >= BUSY_SECONDS for since in seen.values()):
                return
            first_seen = seen
        time.sleep(POLL_SECONDS)
    raise ScenarioFailed(f"No step was executing within {stage.timeout}s; see {log}.")


def finish_with_second_worker(stage: Stage, orders: dict[str, Order]) -> None:
    """Start a second worker, wait for every run to end, then stop it with SIGTERM."""
    workers = stage.workers
    proc = workers.start("--lease", str(LEASE_SECONDS))
    number = workers.number(proc)
    stage.heading(f"\nStarted {workers.label(proc.pid)}; log: {workers.log_path(number)}")
    stage.say(
        f"  It takes over the killed worker's runs once their {LEASE_SECONDS}s "
        "leases expire, and resumes each from its last checkpoint."
    )
    deadline = time.monotonic() + stage.timeout
    for run_id in orders:
        try:
            durable.get_run(run_id).result(timeout=max(0.1, deadline - time.monotonic()))
        except (durable.WorkflowFailed, TimeoutError) as exc:
            stage.say(str(exc))  # the report shows the run's state
    code = workers.terminate(proc)
    stage.say(f"SIGTERM sent to {workers.label(proc.pid)}: it drained and exited ({code=}).")


def report(stage: Stage, runs: list[measure.RunFacts]) -> None:
    """Print each run's outcome and recorded operations, with who executed them."""
    stage.heading("\nWhat the database recorded")
    for run in runs:
        style = stage.style.SUCCESS if run.completed else stage.style.ERROR
        stage.say(
            f"\nOrder #{run.order.pk} ({run.order.status}), run {run.run_id}: {style(run.status)}"
        )
        if run.completed:
            stage.say(f"  result: {json.dumps(run.result, default=str)}")
        else:
            error = run.error or {}
            stage.say(f"  error: {error.get('type')}: {error.get('message')}")
        stage.say(f"  {'pos':>3}  {'kind':<5}  {'name':<18}  {'attempts':>8}  executed by")
        for step in run.steps:
            stage.say(
                f"  {step.position:>3}  {step.kind:<5}  {step.name:<18}  "
                f"{step.attempts:>8}  {_executed_by(step, stage.workers)}"
            )
    stage.say(
        "\nAn atomic step logs its execution in the step's own transaction: an execution "
        "cut short by the kill rolled back with it, so only the committed one is listed."
    )


def _executed_by(step: measure.StepFacts, workers: Workers) -> str:
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


def conclude(stage: Stage, summary: measure.Summary, seconds: float) -> None:
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
    stage.heading(f"\nSummary ({seconds:.1f}s)")
    stage.say(line)
    stage.say(
        f"{_plural(summary.retried, 'failed attempt')} retried by a RetryPolicy; "
        f"{summary.shipped} of {summary.runs} orders shipped with their run's tracking number."
    )
    stage.check(summary.ok, f"{line}. Worker logs: {stage.workers.log_dir}")
    stage.say(stage.style.SUCCESS("Durable: nothing lost, nothing written twice."))


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
