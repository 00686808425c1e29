"""Example 06: the worker running a data pipeline is killed mid-step.

1. Start a ``data_pipeline`` run and a worker with a short lease.
2. Once ``transform_data`` (the longest step, where the seed says to kill the worker) is
   executing, SIGKILL the worker: no chance to clean up, as in a crash.
3. Start a second worker: it takes the run over when the lease expires, replays what was
   recorded and executes the rest. Report, from the database, which process ran what.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from datetime import datetime

from django.utils import timezone

import django_durable as durable
from example_project.demos.registry import scenario
from example_project.demos.stage import ScenarioFailed, Stage

from ..workflows import fault_tolerance
from . import measure
from .measure import plural

# Short, so that the second worker takes the run over soon after the kill.
LEASE_SECONDS = 2
KILL_IN = "transform_data"
BEFORE_KILL = ["fetch_data", "validate_data"]
AFTER_KILL = ["load_data", "send_notification"]


@scenario(
    "pyworkflow-worker-lost",
    seed=measure.seed("06_fault_tolerance.py"),
    title="pyworkflow 06: a worker killed mid-step; another resumes the run from its records",
    order=406,
    own_workers=True,
)
def worker_lost(stage: Stage) -> None:
    """SIGKILL the worker during transform_data, finish with another worker, report."""
    workers = stage.workers
    data_id = measure.unique("data")
    handle = fault_tolerance.data_pipeline.start(data_id)
    stage.say(f"data_pipeline({data_id!r}): run {handle.id}")
    first = workers.start("--lease", str(LEASE_SECONDS))
    stage.say(f"Started {workers.label(first.pid)} with a {LEASE_SECONDS}s lease")
    wait_until_executing(stage, first, handle.id)
    workers.kill(first)
    killed_at = timezone.now()
    done = [step.name for step in measure.records(handle.id) if step.status == "completed"]
    stage.say(
        f"SIGKILL sent to {workers.label(first.pid)} while {KILL_IN} was executing; "
        f"recorded by then: {measure.names(done)}"
    )
    second = workers.start("--lease", str(LEASE_SECONDS))
    stage.say(f"Started {workers.label(second.pid)}: it takes the run over once the lease expires")
    result = stage.result(handle)
    code = workers.terminate(second)
    stage.say(f"SIGTERM sent to {workers.label(second.pid)}: it drained and exited ({code=}).")
    report(stage, handle, first, second, killed_at, done)
    stage.check(result.get("loaded") and result.get("notified"), f"result {result}")


def wait_until_executing(stage: Stage, proc: subprocess.Popen[bytes], run_id: str) -> None:
    """Wait until ``proc`` executes the body of ``KILL_IN`` (started, not recorded)."""
    deadline = time.monotonic() + stage.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ScenarioFailed(f"The worker exited on its own (code {proc.returncode}).")
        started = measure.executions([run_id], KILL_IN)
        recorded = KILL_IN in measure.step_names(run_id)
        if started and not recorded:
            return
        if recorded:
            raise ScenarioFailed(f"{KILL_IN} was recorded before the demo could kill its worker.")
        time.sleep(0.02)
    raise ScenarioFailed(f"{KILL_IN} did not start within {stage.timeout}s.")


def report(
    stage: Stage,
    handle: durable.RunHandle,
    first: subprocess.Popen[bytes],
    second: subprocess.Popen[bytes],
    killed_at: datetime,
    done: list[str],
) -> None:
    """Print who executed each body and how the run was resumed; check the seed's promise."""
    workers = stage.workers
    run = measure.row(handle)
    bodies = measure.executions([handle.id])
    by_step: dict[str, list[int]] = {}
    for body in bodies:
        by_step.setdefault(body.step, []).append(body.pid)
    for name, pids in by_step.items():
        who = ", then ".join(workers.label(pid) for pid in pids)
        stage.say(f"  {name:<18} executed by {who}")
    stage.say(f"  python manage.py durable runs steps {handle.id}  (pyworkflow runs logs):")
    stage.say(measure.indented(measure.durable_command("runs", "steps", handle.id)))
    resumed = next(body for body in bodies if body.pid == second.pid)
    takeover = (resumed.created_at - killed_at).total_seconds()
    stage.measured(
        f"{workers.label(second.pid)} resumed the run {takeover:.1f}s after the kill "
        f"({LEASE_SECONDS}s lease): {plural(len(done), 'record')} replayed, "
        "their bodies not run again"
    )
    counts = Counter(body.step for body in bodies)
    stage.measured(
        f"{run.status} in {measure.seconds(run):.1f}s; "
        f"{KILL_IN} ran {plural(counts[KILL_IN], 'time')} "
        "(the killed execution left no result: steps are at-least-once); every other step once"
    )
    expected = {name: [first.pid] for name in BEFORE_KILL}
    expected[KILL_IN] = [first.pid, second.pid]
    expected |= {name: [second.pid] for name in AFTER_KILL}
    stage.check(by_step == expected, f"bodies executed {by_step}, expected {expected}")
    stage.check(run.status == durable.RunStatus.COMPLETED, f"the run is {run.status}")
    stage.check(
        done == ["fetch_data", "before-validate", "validate_data", "before-transform"],
        f"recorded before the kill: {done}",
    )
