"""Django's Tasks framework, from whichever of its two homes is installed.

Django 6.0 ships it as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport
(``django_tasks``) has the same API under another name. Everything of the framework that
the backend uses is imported here, from ``django.tasks`` when it exists and from the
backport otherwise, so that the rest of the package names neither. mypy reads the
annotations of ``django.tasks`` (django-stubs has them, whatever Django is installed).
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "PACKAGE",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_enqueued",
    "task_finished",
    "task_started",
]

# Where the framework lives: Django's own first, then the backport.
HOMES = ("django.tasks", "django_tasks")


def find_package() -> str:
    """Return the import name of the installed Tasks framework, or raise ImproperlyConfigured."""
    for name in HOMES:
        if find_spec(name) is not None:
            return name
    raise ImproperlyConfigured(
        "django_durable.tasks.DurableBackend needs Django's Tasks framework: Django 6.0 or "
        "later (django.tasks), or on Django 5.2 the django-tasks backport "
        "(pip install 'django-tasks>=0.12', or this package's [tasks] extra)."
    )


PACKAGE = find_package()

if TYPE_CHECKING:
    from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
else:
    _base = import_module(f"{PACKAGE}.base")
    _exceptions = import_module(f"{PACKAGE}.exceptions")
    _signals = import_module(f"{PACKAGE}.signals")
    BaseTaskBackend = import_module(f"{PACKAGE}.backends.base").BaseTaskBackend
    Task = _base.Task
    TaskContext = _base.TaskContext
    TaskError = _base.TaskError
    TaskResult = _base.TaskResult
    TaskResultStatus = _base.TaskResultStatus
    # The backport (0.12) calls it InvalidTaskError; Django 6.0 renamed it InvalidTask.
    InvalidTask = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError
    TaskResultDoesNotExist = _exceptions.TaskResultDoesNotExist
    task_enqueued = _signals.task_enqueued
    task_started = _signals.task_started
    task_finished = _signals.task_finished
