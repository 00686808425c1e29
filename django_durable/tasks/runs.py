"""How a task becomes a workflow, and what one attempt of it does inside its run.

Every task declared with a ``DurableBackend`` is registered as a workflow named by the
task's dotted path (``shop.tasks.send_receipt``), the name ``@durable.workflow`` would give
the same function. So the admin, ``manage.py durable`` and the HTTP API show the task's
own name, and a worker executes the runs of the tasks its code declares, as it does for
workflows. The workflow runs the task as one step, named after the function: its return
value is checkpointed once the body returns. A failed attempt is retried by the run (the
backend's retry policy), so the run's ``attempt`` is the task's attempt number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from ..client.runs import get_run
from ..core.retry import RetryPolicy
from ..core.serialization import error_info
from ..declarations.registry import register
from ..declarations.workflows import Workflow
from .compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    task_finished,
    task_started,
)
from .payloads import plain
from .results import class_path, task_result

if TYPE_CHECKING:
    from ..engine.context import Context

# The task's step never retries by itself: its run does, so that attempts are the run's.
ONCE = RetryPolicy(max_attempts=1)

# The tasks registered as workflows, and their workflows, by workflow name.
_registered: dict[str, tuple[Task[..., Any], Workflow[Any, Any]]] = {}


def register_task(task: Task[..., Any], *, retry: RetryPolicy) -> Workflow[Any, Any]:
    """Register ``task`` as a workflow, once; return the workflow.

    The first backend that declares a function wins: its retry policy is the task's.
    ``ValueError`` if the task's path cannot name a workflow, ``DurableError`` if a
    workflow of that name is another function.
    """
    name = task.module_path
    known = _registered.get(name)
    if known is not None and known[0].func is task.func:
        return known[1]
    workflow = Workflow(
        _workflow_function(task, retry), name=name, queue=None, retry=retry, timeout=None
    )
    register(workflow)
    _registered[name] = (task, workflow)
    return workflow


def task_of(workflow_name: str) -> Task[..., Any] | None:
    """Return the task registered under ``workflow_name``, or ``None`` for a workflow."""
    known = _registered.get(workflow_name)
    return None if known is None else known[0]


def _workflow_function(task: Task[..., Any], retry: RetryPolicy) -> Any:
    def run(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        attempt = Attempt(task, ctx, retry)
        return ctx.step(task.name, lambda: attempt.call(args, kwargs), retry=ONCE)

    # Named as the task: the registry tells two functions apart by their dotted paths.
    run.__module__ = task.func.__module__
    run.__qualname__ = task.func.__qualname__
    run.__name__ = task.func.__name__
    run.__doc__ = task.func.__doc__
    return run


class Attempt:
    """One attempt of a task's body in its run: context, signals, a JSON return value."""

    def __init__(self, task: Task[..., Any], ctx: Context, retry: RetryPolicy) -> None:
        self.task = task
        self.ctx = ctx
        self.retry = retry
        self.sender = type(task.get_backend())

    def call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """Call the task function (``task_started`` before, ``task_finished`` after)."""
        task = self.task
        result = task_result(task, get_run(self.ctx.run_id).model, backend=task.backend)
        task_started.send(sender=self.sender, task_result=result)
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = plain(value, what=f"The return value of task {task.module_path!r}")
        except Exception as exc:
            if not self.retry.should_retry(exc, self.ctx.attempt):
                info = error_info(exc)
                error = TaskError(
                    exception_class_path=class_path(info["type"]), traceback=info["traceback"]
                )
                self._finished(result, TaskResultStatus.FAILED, errors=[error])
            raise
        self._finished(result, TaskResultStatus.SUCCESSFUL, value=value)
        return value

    def _finished(
        self,
        result: TaskResult[..., Any],
        status: TaskResultStatus,
        *,
        value: Any = None,
        errors: list[TaskError] | None = None,
    ) -> None:
        object.__setattr__(result, "status", status)
        object.__setattr__(result, "finished_at", timezone.now())
        object.__setattr__(result, "_return_value", value)
        if errors is not None:
            object.__setattr__(result, "errors", errors)
        task_finished.send(sender=self.sender, task_result=result)
