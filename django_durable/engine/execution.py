"""Execute one claimed run against its records and say how it ended.

The engine replays the workflow function from the top: recorded operations return their
recorded outcome, new ones run and are checkpointed. It returns an ``Outcome``; it never
loops, sleeps or listens. The worker stores the outcome and owns time and I/O.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from asgiref.sync import async_to_sync

from ..core import serialization
from ..core.conf import get_settings
from ..core.runtime import current_context
from ..declarations.registry import get_workflow
from ..declarations.workflows import Workflow
from ..exceptions import (
    AbandonRun,
    Cancelled,
    CheckpointRejected,
    SerializationError,
    SuspendRun,
    WorkflowNotFound,
)
from ..store.records import Claim
from .async_context import AsyncContext
from .checkpoints import Checkpoints, StartMarker
from .context import Context
from .operations import Interrupt
from .replay import BaseContext

logger = logging.getLogger("django_durable")

OutcomeKind = Literal[
    "completed", "failed", "cancelled", "retry", "suspended", "released", "abandoned"
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How an execution ended.

    - ``completed``: ``result`` holds the JSON text of the return value.
    - ``failed``: ``error`` holds the JSON error document; the run is finished.
    - ``cancelled``: the run let ``Cancelled`` propagate; ``error`` says why.
    - ``retry``: failed, but the workflow's policy runs it again at ``wake_at`` after
      deleting the records from ``rewind_to`` on (the failed steps).
    - ``suspended``: waits until ``wake_at`` (``None``: until woken) for ``reason``.
    - ``released``: handed back unfinished (the worker is stopping).
    - ``abandoned``: this worker lost the run (lease taken over, database gone).
    """

    kind: OutcomeKind
    result: str | None = None
    error: str | None = None
    wake_at: datetime | None = None
    reason: str = ""
    rewind_to: int | None = None
    # A wait on an event, a message or a child: what wakes the run (see SuspendRun).
    wake_on: str | None = None
    floor: int = 0
    # A wait for the first of several things (wake_on "f:any"): its (wake_on, floor) pairs.
    keys: tuple[tuple[str, int], ...] = ()
    # Suspended inside ctx.shield(): a pending cancellation does not cut the wait short.
    shielded: bool = False
    # Whether the run may have child runs. A run that never started one ends in a single
    # statement: there are no children for its parent_close policy to close.
    children: bool = True


def execute(
    claim: Claim,
    *,
    alias: str | None = None,
    interrupt: Interrupt | None = None,
    marker: StartMarker | None = None,
) -> Outcome:
    """Run the claimed run until it finishes, suspends, or is lost; return the outcome.

    ``marker`` (the worker's) puts off the start records of step bodies that end quickly.
    """
    alias = alias or get_settings().DATABASE
    try:
        workflow = get_workflow(claim.workflow_name)
        decoded = serialization.loads(claim.input) or {}
        args, kwargs = list(decoded.get("args", [])), dict(decoded.get("kwargs", {}))
    except (WorkflowNotFound, ValueError, TypeError, AttributeError) as exc:
        return _failed(exc)
    checkpoints = Checkpoints.load(claim, alias, marker)
    cancel_on_timeout = workflow.on_timeout == "cancel"
    if workflow.is_async:
        actx = AsyncContext(
            claim=claim,
            checkpoints=checkpoints,
            interrupt=interrupt,
            cancel_on_timeout=cancel_on_timeout,
        )
        return async_to_sync(_execute_async)(workflow, actx, args, kwargs)
    ctx = Context(
        claim=claim,
        checkpoints=checkpoints,
        interrupt=interrupt,
        cancel_on_timeout=cancel_on_timeout,
    )
    return _settle(workflow, ctx, lambda: _call_sync(workflow, ctx, args, kwargs))


def _call_sync(
    workflow: Workflow[Any, Any], ctx: Context, args: list[Any], kwargs: dict[str, Any]
) -> Any:
    token = current_context.set(ctx)
    try:
        return workflow.fn(ctx, *args, **kwargs)
    finally:
        current_context.reset(token)


async def _execute_async(
    workflow: Workflow[Any, Any], ctx: AsyncContext, args: list[Any], kwargs: dict[str, Any]
) -> Outcome:
    token = current_context.set(ctx)
    try:
        value = await workflow.fn(ctx, *args, **kwargs)
    except BaseException as exc:  # handed to _settle, which knows every kind
        error: BaseException = exc
        return _settle(workflow, ctx, lambda: _reraise(error))
    finally:
        current_context.reset(token)
    return _settle(workflow, ctx, lambda: value)


def _reraise(exc: BaseException) -> Any:
    raise exc


def _settle(workflow: Workflow[Any, Any], ctx: BaseContext, call: Callable[[], Any]) -> Outcome:
    """Run ``call`` (the workflow body, or its result) and turn how it ended into an Outcome."""
    outcome = _end(workflow, ctx, call)
    # A child is started with its parent's record, in one transaction: no record, no child.
    children = ctx.checkpoints.has_kind("child")
    return outcome if children else dataclasses.replace(outcome, children=False)


def _end(workflow: Workflow[Any, Any], ctx: BaseContext, call: Callable[[], Any]) -> Outcome:
    try:
        value = call()
    except SuspendRun as signal:
        if ctx.fatal is not None:
            return _failed(ctx.fatal)
        if signal.release:
            return Outcome(kind="released", reason=signal.reason)
        return Outcome(
            kind="suspended",
            wake_at=signal.wake_at,
            reason=signal.reason,
            wake_on=signal.wake_on,
            floor=signal.floor,
            keys=signal.keys,
            shielded=signal.shielded,
        )
    except CheckpointRejected as signal:
        return _failed(signal.error)
    except AbandonRun as signal:
        logger.warning("Abandoning run %s: %s", ctx.run_id, signal)
        return Outcome(kind="abandoned", reason=str(signal))
    except Cancelled as signal:
        if ctx.fatal is not None:
            return _failed(ctx.fatal)
        return Outcome(kind="cancelled", error=_error_text(signal), reason=signal.reason)
    except KeyboardInterrupt:
        raise  # Ctrl-C in a process that calls run_once() stops the process, not the run
    except BaseException as exc:
        # Anything else the workflow raises fails the run, never the worker: SystemExit,
        # asyncio.CancelledError, and the BaseException subclasses of libraries (timeouts,
        # cancel scopes), which would otherwise kill the execution thread.
        return _failure(workflow, ctx, ctx.fatal or exc)
    if ctx.fatal is not None:  # the workflow swallowed it; the run still fails
        return _failed(ctx.fatal)
    unreached = ctx.unreached_operations()
    if unreached is not None:
        return _failed(unreached)
    try:
        text = serialization.dumps(
            value, what=f"The return value of workflow {ctx.workflow_name!r}"
        )
    except SerializationError as exc:
        return _failed(exc)
    return Outcome(kind="completed", result=text)


def _failure(workflow: Workflow[Any, Any], ctx: BaseContext, exc: BaseException) -> Outcome:
    wake_at = None if exc is ctx.fatal else ctx.workflow_retry_at(workflow.retry, exc)
    if wake_at is None:
        return _failed(exc)
    return Outcome(
        kind="retry",
        error=_error_text(exc),
        wake_at=wake_at,
        reason=f"retry of the workflow (attempt {ctx.attempt + 1})",
        rewind_to=_failed_step_position(exc),
    )


def _failed_step_position(exc: BaseException) -> int | None:
    """Return the position of the step whose failure raised ``exc``, if one did.

    A workflow retry deletes that step's record and everything after it, so the step
    runs again; steps that failed earlier and were handled stay as recorded.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        position = getattr(current, "__durable_position__", None)
        if position is not None:
            return int(position)
        current = current.__cause__ or current.__context__
    return None


def _failed(exc: BaseException) -> Outcome:
    return Outcome(kind="failed", error=_error_text(exc))


def _error_text(exc: BaseException) -> str:
    info = serialization.error_info(exc)
    step = getattr(exc, "__durable_step__", None)
    if step is not None:
        info["step"] = step  # the run failed because this step did
    position = _failed_step_position(exc)
    if position is not None:
        info["position"] = position  # where durable.retry() rewinds to
    return serialization.dumps(info, what="The run's error", limit=2 * 1024 * 1024)
