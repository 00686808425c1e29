"""``DurableBackend``: Django's Tasks framework, with tasks run as django-durable runs.

::

    TASKS = {
        "default": {
            "BACKEND": "django_durable.tasks.DurableBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"RETRY": {"max_attempts": 3}},
        }
    }

``enqueue()`` starts a run of the task's workflow (see :mod:`.runs`) on the task's queue,
with its priority, not before its ``run_after``; the ``TaskResult``'s id is the run's id.
The runs are executed by ``manage.py run_workflow_worker``, like every other run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ParamSpec, TypeVar

from django.apps import apps
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..client.runs import get_run
from ..core.retry import RetryPolicy
from ..declarations.registry import registered_workflows
from ..exceptions import DurableError, RunNotFound
from ..models import Run
from .compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    task_enqueued,
)
from .payloads import plain
from .results import task_result
from .runs import register_task, task_of

P = ParamSpec("P")
R = TypeVar("R")

OPTIONS = ("RETRY",)
# The RetryPolicy arguments a setting can give (``retry_on`` takes classes, not settings).
RETRY_KEYS = ("max_attempts", "initial_delay", "backoff", "max_delay", "jitter")


class DurableBackend(BaseTaskBackend):
    """Run Django Tasks as durable runs: retried, visible in the admin, the CLI and the API."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.retry = _retry_policy(alias, self.options)

    def validate_task(self, task: Task[..., Any]) -> None:
        """Check the task as every backend does, then register its workflow."""
        super().validate_task(task)
        try:
            register_task(task, retry=self.retry)
        except (ValueError, DurableError) as exc:
            raise InvalidTask(str(exc)) from exc

    def enqueue(
        self, task: Task[P, R], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[P, R]:
        """Start a run of ``task`` with these JSON arguments; return its ``TaskResult``."""
        self.validate_task(task)
        name = task.module_path
        args = [plain(arg, what=f"Argument {i} of task {name!r}") for i, arg in enumerate(args, 1)]
        kwargs = {
            key: plain(value, what=f"Argument {key}= of task {name!r}")
            for key, value in kwargs.items()
        }
        workflow = register_task(task, retry=self.retry)
        options = workflow.using(
            queue=task.queue_name, priority=task.priority, delay=task.run_after
        )
        run = options.start(*args, **kwargs).model
        result = task_result(task, run, backend=self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        """Return the ``TaskResult`` of the run ``result_id``, read now.

        ``TaskResultDoesNotExist`` if there is no such run, or if it is not a run of a task.
        """
        try:
            run = get_run(result_id).model
        except RunNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        task = _task_of_run(run)
        return task_result(
            task.using(priority=run.priority, queue_name=run.queue, backend=self.alias),
            run,
            backend=self.alias,
        )

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Say so if django_durable, which stores and runs the tasks, is not installed."""
        messages = list(super().check(**kwargs))
        if not apps.is_installed("django_durable"):
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}] is a DurableBackend, but 'django_durable' is not "
                    "in INSTALLED_APPS: nothing would store or run its tasks.",
                    hint="Add 'django_durable' to INSTALLED_APPS.",
                    id="django_durable.E004",
                )
            )
        return messages


def _task_of_run(run: Run) -> Task[..., Any]:
    """Return the task a run runs; import its module if this process has not yet."""
    name = run.workflow_name
    task = task_of(name)
    if task is None and name not in registered_workflows():
        try:
            import_string(name)  # declaring the task registers it (validate_task)
        except ImportError as exc:
            raise TaskResultDoesNotExist(
                f"Run {run.pk} is a run of {name!r}, which is not a task this process can "
                f"import: {exc}"
            ) from None
        task = task_of(name)
    if task is None:
        raise TaskResultDoesNotExist(
            f"Run {run.pk} is a run of workflow {name!r}, not of a task of a DurableBackend."
        )
    return task


def _retry_policy(alias: str, options: dict[str, Any]) -> RetryPolicy:
    """Return the retry policy that ``OPTIONS`` gives the backend's tasks (one attempt)."""
    where = f"TASKS[{alias!r}]['OPTIONS']"
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ImproperlyConfigured(
            f"{where} has unknown keys {', '.join(unknown)}: a DurableBackend takes "
            f"{', '.join(OPTIONS)}."
        )
    retry = options.get("RETRY", {})
    if not isinstance(retry, dict) or not set(retry) <= set(RETRY_KEYS):
        raise ImproperlyConfigured(
            f"{where}['RETRY'] must be a dict of RetryPolicy arguments "
            f"({', '.join(RETRY_KEYS)}), not {retry!r}."
        )
    try:
        return RetryPolicy(**retry)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"{where}['RETRY'] is not a valid retry policy: {exc}") from exc
