"""django-durable: durable workflows for Django, checkpointed in your own database.

``import django_durable as durable``. Importing the package does not import models, so
it is safe in settings and app modules; the client functions load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .channels import ReceivedEvent
from .children import ChildHandle
from .exceptions import (
    Cancelled,
    ChildWorkflowFailed,
    DurableError,
    EventDataInvalid,
    EventTimeout,
    FatalError,
    NonDeterministicWorkflow,
    PayloadTooLarge,
    RetryableError,
    RunNotFound,
    RunNotRetryable,
    SerializationError,
    StepFailed,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowTimedOut,
)
from .faces import AsyncContext, Context
from .registry import StartOptions, StepFunction, Workflow, step, workflow
from .retry_policy import RetryPolicy
from .runtime import StepInfo, step_info
from .statuses import RunStatus

if TYPE_CHECKING:
    from .client import (
        RunHandle,
        acancel,
        aget_run,
        alist_runs,
        aprune,
        aretry,
        astart,
        cancel,
        get_run,
        list_runs,
        prune,
        retry,
        start,
    )
    from .exchange import (
        aemit_event,
        aget_value,
        aread_stream,
        asend,
        emit_event,
        get_value,
        read_stream,
        send,
    )

__version__ = "0.1.0"

__all__ = [
    "AsyncContext",
    "Cancelled",
    "ChildHandle",
    "ChildWorkflowFailed",
    "Context",
    "DurableError",
    "EventDataInvalid",
    "EventTimeout",
    "FatalError",
    "NonDeterministicWorkflow",
    "PayloadTooLarge",
    "ReceivedEvent",
    "RetryPolicy",
    "RetryableError",
    "RunHandle",
    "RunNotFound",
    "RunNotRetryable",
    "RunStatus",
    "SerializationError",
    "StartOptions",
    "StepFailed",
    "StepFunction",
    "StepInfo",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowTimedOut",
    "acancel",
    "aemit_event",
    "aget_run",
    "aget_value",
    "alist_runs",
    "aprune",
    "aread_stream",
    "aretry",
    "asend",
    "astart",
    "cancel",
    "emit_event",
    "get_run",
    "get_value",
    "list_runs",
    "prune",
    "read_stream",
    "retry",
    "send",
    "start",
    "step",
    "step_info",
    "workflow",
]

_LAZY = {
    "acancel": "client",
    "aretry": "client",
    "cancel": "client",
    "retry": "client",
    "aemit_event": "exchange",
    "aget_value": "exchange",
    "aread_stream": "exchange",
    "asend": "exchange",
    "emit_event": "exchange",
    "get_value": "exchange",
    "read_stream": "exchange",
    "send": "exchange",
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
