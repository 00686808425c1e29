"""Django Tasks the tests enqueue (tests/tasks/), run as durable runs by DurableBackend.

It is this app's ``tasks`` module, so every process finds it by itself (the backend's
autodiscovery): the worker subprocesses of tests/tasks/ know these tasks without being told.
They come from ``django.tasks`` on Django 6.0 and from the django-tasks backport before.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 5.2: the backport
    from django_tasks import TaskContext, task

from .models import Execution


@task()
def add(a: int, b: int) -> int:
    """Return ``a + b``."""
    return a + b


@task()
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was given (tuples come back as lists: JSON)."""
    return {"args": args, "kwargs": kwargs}


@task()
async def add_async(a: int, b: int) -> int:
    """An ``async def`` task."""
    return a + b


@task()
def fail(message: str) -> None:
    """Raise ValueError(message)."""
    raise ValueError(message)


@task()
def returns_a_date() -> dt.date:
    """Return something that is not JSON (a date): the run fails, and is not retried."""
    return dt.date(2025, 1, 2)


@task(queue_name="emails", priority=5)
def send_email(to: str) -> str:
    """A task declared on a queue of its own, with a priority."""
    return f"sent to {to}"


@task(takes_context=True)
def context_facts(context: TaskContext) -> dict[str, Any]:
    """Return what the context says: attempt, result id and status."""
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": str(context.task_result.status),
        "attempts": context.task_result.attempts,
    }


@task(takes_context=True)
def record(context: TaskContext, label: str) -> int:
    """Write an Execution row (across processes: tests read the order tasks ran in)."""
    Execution.objects.create(run_id=context.task_result.id, label=label, pid=os.getpid())
    return os.getpid()


@task(backend="retrying", takes_context=True)
def flaky(context: TaskContext, succeed_on: int) -> int:
    """Fail until attempt ``succeed_on``; return the attempt that succeeded."""
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return context.attempt


class RefusedError(Exception):
    """An exception whose arguments cannot be rebuilt from its message alone."""

    def __init__(self, code: int, *, reason: str) -> None:
        super().__init__(f"refused {code}: {reason}")
        self.code = code


@task()
def refuse(code: int) -> None:
    """Raise an exception that django-durable cannot raise again as its own type."""
    raise RefusedError(code, reason="no")
