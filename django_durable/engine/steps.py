"""What ``ctx.step`` does around a step's body: its options, the call, and its records.

A step's body runs with ``current_step`` set (durable operations are refused inside it,
and ``durable.step_info()`` answers). A failed attempt is recorded: as ``retrying`` with
the time of the next attempt, or as ``failed`` when its retry policy gives up. A step
with a ``timeout`` has each attempt bounded (see :mod:`.timeouts`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction

from ..core import serialization, telemetry
from ..core.retry import RetryPolicy
from ..core.runtime import StepInfo, current_step
from ..core.statuses import StepStatus
from ..declarations.workflows import StepFunction, step_timeout
from ..store import announce
from . import timeouts
from .operations import Operation

if TYPE_CHECKING:
    from .replay import BaseContext


@dataclasses.dataclass(frozen=True, slots=True)
class StepOptions:
    """What ``ctx.step(name, fn, ...)`` runs, and how: the call's options over ``fn``'s."""

    body: Callable[..., Any]
    policy: RetryPolicy
    atomic: bool
    timeout: float | None  # seconds per attempt; None: no bound


def options(
    name: str,
    fn: Any,
    *,
    retry: RetryPolicy | None,
    atomic: bool | None,
    timeout: float | timedelta | None,
    default: RetryPolicy,
) -> StepOptions:
    """Return the body and options of ``ctx.step(name, fn, ...)``, checked (naming the step)."""
    if isinstance(fn, StepFunction):
        is_atomic = fn.atomic if atomic is None else atomic
        seconds = step_timeout(name, fn.timeout if timeout is None else timeout, is_atomic)
        return StepOptions(fn.fn, retry or fn.retry or default, is_atomic, seconds)
    if not callable(fn):
        raise TypeError(f"ctx.step() needs a callable, not {type(fn).__name__}.")
    is_atomic = bool(atomic)
    return StepOptions(fn, retry or default, is_atomic, step_timeout(name, timeout, is_atomic))


def info(ctx: BaseContext, op: Operation, attempt: int, options: StepOptions) -> StepInfo:
    """Return what ``durable.step_info()`` says inside this attempt of the step."""
    return StepInfo(
        ctx.run_id,
        ctx.workflow_name,
        op.name,
        op.position,
        attempt,
        options.policy.max_attempts,
        options.timeout,
    )


def run_body(options: StepOptions, args: Any, kwargs: Any, step: StepInfo) -> Any:
    """Run a plain body (not atomic): in this thread, or in a helper bounded by its timeout."""
    if options.timeout is None:
        return call_body(options.body, args, kwargs, step)
    return timeouts.call_with_timeout(
        lambda bounded: call_body(options.body, args, kwargs, bounded), step, options.timeout
    )


async def await_body(options: StepOptions, args: Any, kwargs: Any, step: StepInfo) -> Any:
    """Await an ``async def`` body with ``current_step`` set, cancelled at its timeout."""

    async def call(bounded: StepInfo) -> Any:
        token = current_step.set(bounded)
        try:
            with telemetry.step_span(bounded):
                return await options.body(*args, **kwargs)
        finally:
            current_step.reset(token)

    if options.timeout is None:
        return await call(step)
    return await timeouts.await_with_timeout(call, step, options.timeout)


def call_body(body: Callable[..., Any], args: Any, kwargs: Any, step: StepInfo) -> Any:
    """Call a step's body with ``current_step`` set to ``step``, in the step's span."""
    token = current_step.set(step)
    try:
        with telemetry.step_span(step):
            return body(*args, **kwargs)
    finally:
        current_step.reset(token)


def run_atomic(
    ctx: BaseContext,
    op: Operation,
    body: Callable[..., Any],
    args: Any,
    kwargs: Any,
    step: StepInfo,
) -> Any:
    """Call the body and commit its checkpoint in one transaction; return the result."""
    started = time.monotonic()
    with transaction.atomic(using=ctx.alias):
        value = call_body(body, args, kwargs, step)
        return ctx.complete_value(op, value, step.attempt, started)


def record_failure(
    ctx: BaseContext,
    op: Operation,
    exc: Exception,
    policy: RetryPolicy,
    attempt: int,
    started: float,
) -> BaseException:
    """Record a failed attempt; return the signal to raise (retry wait, or the error)."""
    duration = (time.monotonic() - started) * 1000
    error = serialization.error_info(exc, step=op.name, attempts=attempt)
    error.update(at=ctx.clock.now(), duration_ms=round(duration, 3))
    earlier = earlier_attempts(ctx, op)
    if earlier:
        error["earlier"] = earlier
    error_text = serialization.dumps(error, what=f"The error of step {op.name!r}")
    retrying = policy.should_retry(exc, attempt)
    wake_at = ctx.clock.after(policy.delay(attempt, exc)) if retrying else None
    status = StepStatus.RETRYING if retrying else StepStatus.FAILED
    ctx.checkpoints.write(
        op.position,
        op.kind,
        op.name,
        status,
        error=error_text,
        attempts=attempt,
        duration_ms=duration,
    )
    if wake_at is not None:
        announce.step_retried(
            run_id=ctx.run_id,
            workflow_name=ctx.workflow_name,
            step_name=op.name,
            position=op.position,
            attempt=attempt,
            error=error_text,
            retry_at=wake_at,
            alias=ctx.alias,
        )
        return ctx.suspend(wake_at, f"retry of step {op.name!r} (attempt {attempt + 1})")
    return ctx.step_exception(op.position, error, exc)


# Attempts before the last one a failed or retrying step keeps the error of (the newest).
MAX_EARLIER = 20


def earlier_attempts(ctx: BaseContext, op: Operation) -> list[dict[str, Any]]:
    """Return the errors of the attempts before this one, oldest first, for people.

    A retrying record is replaced by the next attempt's: what each earlier attempt raised,
    when it ended and how long it took is carried over in its ``earlier`` list.
    """
    record = ctx.checkpoints.get(op.position)
    if record is None or record.status != StepStatus.RETRYING or not record.error:
        return []
    previous = serialization.loads(record.error)
    own = {
        "attempt": record.attempts,
        "type": previous.get("type"),
        "message": previous.get("message"),
        "at": previous.get("at"),
        "duration_ms": previous.get("duration_ms"),
    }
    return [*previous.get("earlier", []), own][-MAX_EARLIER:]
