"""django-durable: durable workflows for Django, checkpointed in your own database.

``import django_durable as durable``. Importing the package does not import models, so
it is safe in settings and app modules; the client functions load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import AsyncContext, Context
from .exceptions import (
    DurableError,
    FatalError,
    NonDeterministicWorkflow,
    PayloadTooLarge,
    RetryableError,
    RunNotFound,
    SerializationError,
    StepFailed,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowTimedOut,
)
from .registry import StartOptions, StepFunction, Workflow, step, workflow
from .retry import RetryPolicy
from .statuses import RunStatus

if TYPE_CHECKING:
    from .client import (
        RunHandle,
        aget_run,
        alist_runs,
        aprune,
        astart,
        get_run,
        list_runs,
        prune,
        start,
    )

__version__ = "0.1.0"

__all__ = [
    "AsyncContext",
    "Context",
    "DurableError",
    "FatalError",
    "NonDeterministicWorkflow",
    "PayloadTooLarge",
    "RetryPolicy",
    "RetryableError",
    "RunHandle",
    "RunNotFound",
    "RunStatus",
    "SerializationError",
    "StartOptions",
    "StepFailed",
    "StepFunction",
    "Workflow",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowTimedOut",
    "aget_run",
    "alist_runs",
    "aprune",
    "astart",
    "get_run",
    "list_runs",
    "prune",
    "start",
    "step",
    "workflow",
]

_LAZY = {
    "RunHandle": "client",
    "aget_run": "client",
    "aprune": "client",
    "alist_runs": "client",
    "astart": "client",
    "get_run": "client",
    "list_runs": "client",
    "prune": "client",
    "start": "client",
}


def __getattr__(name: str) -> Any:
    # The client and models need the app registry; load them on first use.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_durable' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
