"""A run, as Django's Tasks framework sees it: a ``TaskResult`` read from the run's row.

The result's id is the run's id. Its status, times, arguments, return value, errors and
attempts all come from the row, so ``enqueue()``, ``get_result()`` and the context a
running task gets say the same thing about the same run.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from ..core.serialization import qualified_name
from ..core.statuses import RunStatus
from ..exceptions import StepFailed
from ..models import Run
from .compat import Task, TaskError, TaskResult, TaskResultStatus

P = ParamSpec("P")
R = TypeVar("R")

# A run that waits (for its next attempt) or was handed back by a stopping worker is ready
# to be executed again; a cancelled run did not succeed, which the framework calls FAILED.
STATUSES = {
    RunStatus.PENDING: TaskResultStatus.READY,
    RunStatus.WAITING: TaskResultStatus.READY,
    RunStatus.RUNNING: TaskResultStatus.RUNNING,
    RunStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    RunStatus.FAILED: TaskResultStatus.FAILED,
    RunStatus.CANCELLED: TaskResultStatus.FAILED,
}


def task_result(task: Task[P, R], run: Run, *, backend: str) -> TaskResult[P, R]:
    """Return the ``TaskResult`` of ``run``, a run of ``task`` enqueued on ``backend``."""
    args, kwargs = run.get_input()
    attempts = attempts_made(run)
    result: TaskResult[P, R] = TaskResult(
        task=task,
        id=str(run.pk),
        status=STATUSES[RunStatus(run.status)],
        enqueued_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        last_attempted_at=last_attempted_at(run),
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=errors(run),
        worker_ids=worker_ids(run, attempts),
    )
    if run.status == RunStatus.COMPLETED:
        object.__setattr__(result, "_return_value", run.get_result())
    return result


def attempts_made(run: Run) -> int:
    """Return how many attempts of the run began: its ``attempt``, less one while it waits.

    A run's ``attempt`` counts up when a failed attempt is to be retried, before the next
    one begins; a run that never started has made none.
    """
    if run.started_at is None:
        return 0
    if run.status in (RunStatus.PENDING, RunStatus.WAITING):
        return run.attempt - 1
    return run.attempt


def last_attempted_at(run: Run) -> datetime | None:
    """Return when the latest attempt began (as near as the row tells), if one did.

    A running run was stamped by its claim. Otherwise the row keeps when the run first
    started and when it last became due; a worker claimed it soon after that.
    """
    if run.started_at is None:
        return None
    if run.status == RunStatus.RUNNING:
        return run.updated_at
    return max(run.started_at, min(run.available_at, run.finished_at or run.available_at))


def worker_ids(run: Run, attempts: int) -> list[str]:
    """Return one entry per attempt: the worker that holds the run, or "" if unknown.

    django-durable keeps which worker holds a run only while it holds it.
    """
    ids = [""] * attempts
    if ids and run.status == RunStatus.RUNNING and run.claimed_by:
        ids[-1] = run.claimed_by
    return ids


def errors(run: Run) -> list[TaskError]:
    """Return the error of the run's latest failed attempt, if it keeps one, as a list."""
    info = run.error
    if not isinstance(info, dict) or not info.get("type"):
        return []
    return [
        TaskError(
            exception_class_path=class_path(raised_type(info)),
            traceback=str(info.get("traceback") or info.get("message") or ""),
        )
    ]


_STEP_FAILED = qualified_name(StepFailed)
_DOTTED = re.compile(r"[A-Za-z_][\w.]*")


def raised_type(info: dict[str, Any]) -> str:
    """Return the dotted name of the exception the task raised, from the run's error.

    An exception that cannot be raised again as its own type (its arguments are not JSON,
    or its constructor takes others) fails the run as ``StepFailed``, whose message
    begins with the step and the original type: that type is the task's.
    """
    kind = str(info["type"])
    if kind != _STEP_FAILED or "step" not in info:
        return kind
    prefix = f"Step {info['step']!r} failed: "
    message = str(info.get("message") or "")
    if message.startswith(prefix):
        original = message[len(prefix) :].split(":", 1)[0]
        if _DOTTED.fullmatch(original):
            return original
    return kind


def class_path(name: str) -> str:
    """Return an exception's dotted path that ``import_string`` finds (builtins included)."""
    return name if "." in name else f"builtins.{name}"
