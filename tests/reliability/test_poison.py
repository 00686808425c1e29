"""Poison: runs that can never succeed end failed, with a clear error, and the worker lives.

One worker process takes every poison in turn. After each, the same process must execute a
normal run: a poison fails its run, never the worker, and never leaves the run stuck. A run
that kills its worker every time is failed after ``MAX_RECOVERIES`` takeovers, with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings

import django_durable as durable
from django_durable.models import Run, RunStatus
from tests.reliability.conftest import WorkerPool, report
from tests.testapp import reliability_workflows as rw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_PAYLOAD = settings.DJANGO_DURABLE.get("MAX_PAYLOAD_BYTES", 1024 * 1024)
HUGE = MAX_PAYLOAD + 1024
SERIALIZATION = "django_durable.exceptions.SerializationError"
TOO_LARGE = "django_durable.exceptions.PayloadTooLarge"


def by_hand(workflow_name: str, document: object) -> str:
    """Insert a run row the client would never write (a removed workflow, a corrupt input)."""
    return str(Run.objects.create(workflow_name=workflow_name, input=document).id)


@dataclass(frozen=True)
class Poison:
    name: str
    start: Callable[[], str]
    error_type: str
    says: str  # a piece of the error message that tells what went wrong


POISONS = [
    Poison(
        "result-not-json",
        lambda: rw.bad_result.start("object").id,
        SERIALIZATION,
        "cannot be stored as JSON",
    ),
    Poison("result-set", lambda: rw.bad_result.start("set").id, SERIALIZATION, "is not JSON"),
    Poison(
        "step-result-not-json",
        lambda: rw.bad_step_result.start("object").id,
        SERIALIZATION,
        "The result of step 'bad' cannot be stored as JSON",
    ),
    Poison(
        "step-result-nan",
        lambda: rw.bad_step_result.start("nan").id,
        SERIALIZATION,
        "Out of range float",
    ),
    Poison("step-result-nul", lambda: rw.bad_step_result.start("nul").id, SERIALIZATION, "NUL"),
    Poison(
        "step-result-too-deep",
        lambda: rw.bad_step_result.start("deep", 100_000).id,
        SERIALIZATION,
        "recursion",
    ),
    Poison(
        "step-result-huge",
        lambda: rw.bad_step_result.start("huge", HUGE).id,
        TOO_LARGE,
        "MAX_PAYLOAD_BYTES",
    ),
    Poison(
        "result-huge", lambda: rw.bad_result.start("huge", HUGE).id, TOO_LARGE, "MAX_PAYLOAD_BYTES"
    ),
    Poison(
        "value-huge", lambda: rw.bad_value.start("huge", HUGE).id, TOO_LARGE, "MAX_PAYLOAD_BYTES"
    ),
    # Its arguments are too large to keep, so it cannot be raised again as a ValueError.
    Poison(
        "error-huge",
        lambda: rw.huge_error.start(10 * HUGE).id,
        "django_durable.exceptions.StepFailed",
        "Step 'fails' failed: ValueError: xxxx",
    ),
    Poison(
        "unknown-workflow",
        lambda: by_hand("reliability.removed_in_a_deploy", {"args": [], "kwargs": {}}),
        "django_durable.exceptions.WorkflowNotFound",
        "Workflow 'reliability.removed_in_a_deploy' is unknown: no live worker registers it",
    ),
    Poison(
        "input-not-an-object",
        lambda: by_hand("tests.add", [1, 2]),
        "AttributeError",
        "",
    ),
    Poison(
        "wrong-arguments",
        lambda: durable.start("tests.add", [1]).id,
        "TypeError",
        "missing 1 required positional argument",
    ),
    Poison(
        "non-deterministic",
        lambda: rw.nondeterministic.start().id,
        "django_durable.exceptions.NonDeterministicWorkflow",
        "is not deterministic",
    ),
    Poison("system-exit", lambda: wf.exits.start().id, "SystemExit", "3"),
    Poison("recursion", lambda: rw.recurses.start().id, "RecursionError", "recursion"),
    Poison(
        "step-raises-base-exception",
        lambda: rw.raises_base_exception.start().id,
        "tests.testapp.reliability_workflows.StepInterrupted",
        "a step body raised a BaseException",
    ),
    # KeyboardInterrupt is Ctrl-C's: it is not turned into the run's error. The worker gives
    # the run up each time, and fails it after MAX_RECOVERIES takeovers, as a crash.
    Poison(
        "step-raises-keyboard-interrupt",
        lambda: rw.raises_keyboard_interrupt.start().id,
        "django_durable.WorkerLost",
        "MAX_RECOVERIES",
    ),
]


def normal_run_on(proc) -> None:
    handle = rw.steps.start(1)
    assert handle.result(timeout=60) == 1
    assert Execution.objects.get(run_id=handle.id).pid == proc.pid


def test_every_poison_fails_its_run_clearly_and_the_worker_goes_on(worker_pool):
    # Concurrency 1: a poison that broke the execution thread would stop everything after.
    # A run of a workflow no worker registers waits for one that does, for a second here.
    pool: WorkerPool = worker_pool(
        1,
        "--concurrency",
        "1",
        "--lease",
        "2",
        "--poll-interval",
        "0.1",
        settings={"UNKNOWN_WORKFLOW_TIMEOUT": 1},
    ).start()
    proc = pool.slots[0]
    normal_run_on(proc)
    outcomes = {}
    for poison in POISONS:
        run_id = poison.start()
        pool.wait(lambda run_id=run_id: Run.objects.get(pk=run_id).is_terminal, 60, poison.name)
        run = Run.objects.get(pk=run_id)
        outcomes[poison.name] = run
        error = run.error or {}
        report(
            f"poison[{poison.name}]",
            status=run.status,
            error_bytes=len(json.dumps(error)),
            type=error.get("type"),
            message=repr(str(error.get("message", ""))[:90]),
        )
        assert run.status == RunStatus.FAILED, poison.name
        assert error.get("type") == poison.error_type, (poison.name, error.get("type"))
        assert poison.says in error.get("message", ""), (poison.name, error.get("message"))
        assert len(json.dumps(error)) < 2 * 1024 * 1024  # an error can always be stored
        assert proc.poll() is None, f"the worker died on {poison.name}\n{pool.logs()}"
        normal_run_on(proc)
    # A payload over the limit never gets as far as a run: start() refuses it.
    with pytest.raises(durable.PayloadTooLarge, match="MAX_PAYLOAD_BYTES"):
        rw.steps.start(1, "x" * HUGE)
    report("poison", cases=len(POISONS), failed_cleanly=len(outcomes), worker_restarts=0)
    assert pool.stop() == [0]


def test_a_run_that_kills_its_worker_every_time_fails_after_max_recoveries(worker_pool):
    max_recoveries = 2
    pool: WorkerPool = worker_pool(
        1,
        "--lease",
        "1",
        "--poll-interval",
        "0.1",
        settings={"MAX_RECOVERIES": max_recoveries},
    ).start()
    handle = rw.kills_its_worker.start()
    restarts = 0

    def finished() -> bool:
        nonlocal restarts
        restarts += pool.supervise()  # a process manager restarts the dead worker
        return Run.objects.get(pk=handle.id).is_terminal

    pool.wait(finished, 120, "the killer run ended")
    run = Run.objects.get(pk=handle.id)
    kills = Execution.objects.filter(run_id=handle.id, label="kill")
    report(
        "poison[kills-its-worker]",
        max_recoveries=max_recoveries,
        workers_killed=kills.count(),
        restarts=restarts,
        status=run.status,
        type=run.error["type"],
    )
    assert run.status == RunStatus.FAILED
    assert run.error["type"] == "django_durable.WorkerLost"
    assert "MAX_RECOVERIES" in run.error["message"]
    # Taken over MAX_RECOVERIES times, so it ran (and killed a worker) once more than that.
    assert kills.count() == max_recoveries + 1
    assert len(set(kills.values_list("pid", flat=True))) == max_recoveries + 1
    # The worker that took its place is healthy.
    pool.supervise()
    normal_run_on(pool.alive[0])
    assert pool.stop() == [0]
