"""django-durable: durable workflows for Django, checkpointed in your own database.

``import django_durable as durable``. Importing the package does not import models, so
it is safe in settings and app modules: the names that need the models (the client's
functions, ``ctx``'s classes, ``Worker``) load on first use, once Django is set up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .core.logfields import RunLogFilter
from .core.retry import RetryPolicy
from .core.runtime import StepInfo, step_info
from .core.signals import run_failed, run_finished, run_started, run_taken_over, step_retried
from .core.statuses import RunStatus
from .declarations.workflows import StartOptions, StepFunction, Workflow, step, workflow
from .exceptions import (
    CallbackClosed,
    CallbackFailed,
    CallbackNotFound,
    CallbackTimeout,
    Cancelled,
    ChildWorkflowFailed,
    DurableError,
    EventDataInvalid,
    EventTimeout,
    FatalError,
    NonDeterministicWorkflow,
    NothingToWake,
    PayloadTooLarge,
    RetryableError,
    RunFinished,
    RunNotForkable,
    RunNotFound,
    RunNotRetryable,
    SerializationError,
    StepFailed,
    StepTimeout,
    TokenRefused,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowTimedOut,
)

if TYPE_CHECKING:
    from .client.callbacks import (
        acomplete_callback,
        afail_callback,
        complete_callback,
        fail_callback,
    )
    from .client.handle import RunHandle
    from .client.messaging import aemit_event, asend, emit_event, send
    from .client.operating import (
        PruneResult,
        acancel,
        aprune,
        awake_now,
        cancel,
        prune,
        wake_now,
    )
    from .client.runs import (
        afork,
        aget_run,
        alist_runs,
        aretry,
        astart,
        fork,
        get_run,
        list_runs,
        retry,
        start,
    )
    from .client.streams import aread_stream, astream_items, read_stream, stream_items
    from .client.tokens import acreate_token, arevoke_tokens, create_token, revoke_tokens
    from .client.values import (
        VersionedValue,
        aget_value,
        aget_values,
        awatch_value,
        get_value,
        get_values,
        watch_value,
    )
    from .engine.async_context import AsyncContext
    from .engine.callbacks import Callback
    from .engine.channels import ReceivedEvent
    from .engine.children import ChildHandle
    from .engine.context import Context
    from .engine.waits import Winner, event, message, timer
    from .worker.worker import Worker

# The one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"

__all__ = [
    "AsyncContext",
    "Callback",
    "CallbackClosed",
    "CallbackFailed",
    "CallbackNotFound",
    "CallbackTimeout",
    "Cancelled",
    "ChildHandle",
    "ChildWorkflowFailed",
    "Context",
    "DurableError",
    "EventDataInvalid",
    "EventTimeout",
    "FatalError",
    "NonDeterministicWorkflow",
    "NothingToWake",
    "PayloadTooLarge",
    "PruneResult",
    "ReceivedEvent",
    "RetryPolicy",
    "RetryableError",
    "RunFinished",
    "RunHandle",
    "RunLogFilter",
    "RunNotForkable",
    "RunNotFound",
    "RunNotRetryable",
    "RunStatus",
    "SerializationError",
    "StartOptions",
    "StepFailed",
    "StepFunction",
    "StepInfo",
    "StepTimeout",
    "TokenRefused",
    "VersionedValue",
    "Winner",
    "Worker",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowNotFound",
    "WorkflowTimedOut",
    "acancel",
    "acomplete_callback",
    "acreate_token",
    "aemit_event",
    "afail_callback",
    "afork",
    "aget_run",
    "aget_value",
    "aget_values",
    "alist_runs",
    "aprune",
    "aread_stream",
    "aretry",
    "arevoke_tokens",
    "asend",
    "astart",
    "astream_items",
    "awake_now",
    "awatch_value",
    "cancel",
    "complete_callback",
    "create_token",
    "emit_event",
    "event",
    "fail_callback",
    "fork",
    "get_run",
    "get_value",
    "get_values",
    "list_runs",
    "message",
    "prune",
    "read_stream",
    "retry",
    "revoke_tokens",
    "run_failed",
    "run_finished",
    "run_started",
    "run_taken_over",
    "send",
    "start",
    "step",
    "step_info",
    "step_retried",
    "stream_items",
    "timer",
    "wake_now",
    "watch_value",
    "workflow",
]

# Where each name that needs the models lives: loaded on first use.
_LAZY = {
    "AsyncContext": "engine.async_context",
    "Callback": "engine.callbacks",
    "ChildHandle": "engine.children",
    "Context": "engine.context",
    "PruneResult": "client.operating",
    "ReceivedEvent": "engine.channels",
    "RunHandle": "client.handle",
    "VersionedValue": "client.values",
    "Winner": "engine.waits",
    "Worker": "worker.worker",
    "acancel": "client.operating",
    "acomplete_callback": "client.callbacks",
    "acreate_token": "client.tokens",
    "aemit_event": "client.messaging",
    "afail_callback": "client.callbacks",
    "afork": "client.runs",
    "aget_run": "client.runs",
    "aget_value": "client.values",
    "aget_values": "client.values",
    "alist_runs": "client.runs",
    "aprune": "client.operating",
    "aread_stream": "client.streams",
    "aretry": "client.runs",
    "arevoke_tokens": "client.tokens",
    "asend": "client.messaging",
    "astart": "client.runs",
    "astream_items": "client.streams",
    "awake_now": "client.operating",
    "awatch_value": "client.values",
    "cancel": "client.operating",
    "complete_callback": "client.callbacks",
    "create_token": "client.tokens",
    "emit_event": "client.messaging",
    "event": "engine.waits",
    "fail_callback": "client.callbacks",
    "fork": "client.runs",
    "get_run": "client.runs",
    "get_value": "client.values",
    "get_values": "client.values",
    "list_runs": "client.runs",
    "message": "engine.waits",
    "prune": "client.operating",
    "read_stream": "client.streams",
    "retry": "client.runs",
    "revoke_tokens": "client.tokens",
    "send": "client.messaging",
    "start": "client.runs",
    "stream_items": "client.streams",
    "timer": "engine.waits",
    "wake_now": "client.operating",
    "watch_value": "client.values",
}


def __getattr__(name: str) -> Any:
    # The client, the engine and the worker need the app registry: loaded on first use.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'django_durable' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
