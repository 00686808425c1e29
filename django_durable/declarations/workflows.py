"""Declaring workflows and steps: ``@durable.workflow``, ``@durable.step`` and start options.

Pure metadata: a declaration validates its options and registers itself; starting a run
goes through :mod:`.starting`, where the client is plugged in.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from numbers import Real
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload

from ..core import serialization
from ..core.conf import get_settings
from ..core.durations import CENTURY, optional_seconds, timeout_seconds, to_seconds
from ..core.names import check_name
from ..core.retry import RetryPolicy
from ..core.runtime import current_context, current_step
from . import starting
from .registry import default_name, register
from .specs import FlowSpec, ScheduleSpec, TriggerSpec

if TYPE_CHECKING:
    from ..client.handle import RunHandle

# The range of the priority column (a SmallIntegerField); higher runs first.
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767

_DELAY_TYPES = "delay= takes seconds, a timedelta, or an aware datetime."

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StartOptions:
    """How to start a run: returned by ``Workflow.using()``; call ``.start()`` on it."""

    workflow: Workflow[Any, Any]
    idempotency_key: str | None = None
    queue: str | None = None
    priority: int = 0
    delay: float | timedelta | datetime | None = None
    owner: Any = None
    # For a child run: what happens to it when its parent finishes first.
    parent_close: str = "cancel"

    def __post_init__(self) -> None:
        if self.parent_close not in ("cancel", "abandon"):
            raise ValueError('parent_close= must be "cancel" or "abandon".')
        delay = self.delay
        if isinstance(delay, datetime):
            if delay.tzinfo is None or delay.utcoffset() is None:
                raise ValueError(_DELAY_TYPES)
        elif delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, Real | timedelta):
                raise TypeError(_DELAY_TYPES)
            to_seconds(delay, "delay=", limit=CENTURY)

    def run_fields(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the columns of a new run started with these options and arguments.

        The input is encoded (``SerializationError`` if it cannot be stored) and the
        priority checked against the column's range.
        """
        workflow = self.workflow
        priority = self.priority
        if not (isinstance(priority, int) and PRIORITY_MIN <= priority <= PRIORITY_MAX):
            raise ValueError(
                f"priority= must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}, "
                f"not {priority!r}."
            )
        document = serialization.to_document(
            {"args": list(args), "kwargs": dict(kwargs)},
            what=f"The input of workflow {workflow.name!r}",
        )
        flow = workflow.flow
        return {
            "workflow_name": workflow.name,
            "queue": self.queue or workflow.queue or get_settings().DEFAULT_QUEUE,
            "priority": priority,
            "input": document,
            "idempotency_key": self.idempotency_key,
            "parent_close": self.parent_close,
            "flow_key": None if flow is None else flow.key_of(workflow.name, args, kwargs),
            "flow_limit": None if flow is None else flow.limit,
        }

    def start(self, *args: Any, **kwargs: Any) -> RunHandle:
        """Start a run of the workflow with these options and arguments."""
        return starting.start(self, args, kwargs)

    async def astart(self, *args: Any, **kwargs: Any) -> RunHandle:
        """Start a run of the workflow with these options and arguments (async)."""
        return await starting.astart(self, args, kwargs)


class Workflow(Generic[P, R]):
    """A registered workflow: call ``.start()`` to run it durably.

    Calling the object itself calls the plain function, which is handy in unit tests.
    """

    def __init__(
        self,
        fn: Callable[Concatenate[Any, P], R],
        *,
        name: str,
        queue: str | None,
        retry: RetryPolicy,
        timeout: float | None,
        http_start: bool = False,
        schedule: ScheduleSpec | None = None,
        trigger: TriggerSpec | None = None,
        on_timeout: str = "fail",
        flow: FlowSpec | None = None,
    ) -> None:
        self.fn = fn
        self.name = check_name(name, "workflow")
        self.queue = queue
        self.retry = retry
        self.timeout = timeout
        # Whether the HTTP API may start it (POST runs/), subject to the access policy.
        self.http_start = http_start
        self.schedule = schedule
        self.trigger = trigger
        if on_timeout not in ("fail", "cancel"):
            raise ValueError('on_timeout= must be "fail" or "cancel".')
        # What the run's deadline does: fail it (WorkflowTimedOut) or cancel it.
        self.on_timeout = on_timeout
        # Flow control per key: concurrency, singleton, debounce (``None``: none).
        self.flow = flow
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r}>"

    def __call__(self, ctx: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(ctx, *args, **kwargs)

    @property
    def max_attempts(self) -> int:
        """Return how many times a failing run is attempted in all."""
        return self.retry.max_attempts

    def using(
        self,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        delay: float | timedelta | datetime | None = None,
        owner: Any = None,
        parent_close: str = "cancel",
    ) -> StartOptions:
        """Return start options: an idempotency key, queue, priority, delay or owner.

        ``parent_close`` ("cancel" or "abandon") applies when the run is started as a child
        with ``ctx.start_child``: what happens to it if its parent finishes first.
        """
        return StartOptions(
            workflow=self,
            idempotency_key=idempotency_key,
            queue=queue,
            priority=priority,
            delay=delay,
            owner=owner,
            parent_close=parent_close,
        )

    def start(self, *args: P.args, **kwargs: P.kwargs) -> RunHandle:
        """Start a run with these arguments and return its handle."""
        return self.using().start(*args, **kwargs)

    async def astart(self, *args: P.args, **kwargs: P.kwargs) -> RunHandle:
        """Start a run with these arguments and return its handle (async)."""
        return await self.using().astart(*args, **kwargs)


def step_timeout(name: str, timeout: float | timedelta | None, atomic: bool) -> float | None:
    """Return a step's timeout in seconds (``None``: none); raise naming the step if invalid.

    An atomic step cannot have one: its body runs inside the transaction of its checkpoint,
    on the worker's connection, and a thread cannot be stopped, so nothing could end the
    attempt at the deadline but the body itself.
    """
    seconds = timeout_seconds(timeout, f"The timeout of step {name!r}")
    if seconds is not None and atomic:
        raise ValueError(
            f"Step {name!r} is atomic and has a timeout: an atomic step's body runs in the "
            "transaction of its checkpoint and cannot be cut short. Drop the timeout, or make "
            "the step non-atomic; on PostgreSQL, SET LOCAL statement_timeout inside the body "
            "bounds its queries."
        )
    return seconds


class StepFunction(Generic[P, R]):
    """A function whose calls inside a workflow are checkpointed steps.

    Outside a workflow (or inside another step's body) it is an ordinary call.
    In an ``async def`` workflow, ``await`` the call.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        retry: RetryPolicy | None,
        atomic: bool,
        timeout: float | timedelta | None = None,
    ) -> None:
        self.fn = fn
        self.name = check_name(name, "step")
        self.retry = retry
        self.atomic = atomic
        self.timeout = step_timeout(self.name, timeout, atomic)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Step {self.name!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = current_context.get()
        if ctx is None or current_step.get() is not None:
            return self.fn(*args, **kwargs)
        # Context.step returns the value, AsyncContext.step a coroutine to await.
        result: R = cast(Any, ctx).step(self.name, self, *args, **kwargs)
        return result


@overload
def workflow(fn: Callable[Concatenate[Any, P], R], /) -> Workflow[P, R]: ...


@overload
def workflow(
    *,
    name: str | None = None,
    queue: str | None = None,
    max_attempts: int = 1,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    on_timeout: str = "fail",
    http_start: bool = False,
    schedule: str | None = None,
    schedule_timezone: str | None = None,
    missed_ticks: str = "skip",
    trigger_on_event: str | None = None,
    batch_size: int = 1,
    batch_timeout: float | timedelta | None = None,
    concurrency_key: Callable[..., str] | None = None,
    concurrency_limit: int | None = None,
    singleton_key: Callable[..., str] | None = None,
    on_conflict: str = "return",
    debounce: float | timedelta | None = None,
    debounce_key: Callable[..., str] | None = None,
) -> Callable[[Callable[Concatenate[Any, P], R]], Workflow[P, R]]: ...


def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    queue: str | None = None,
    max_attempts: int = 1,
    retry: RetryPolicy | None = None,
    timeout: float | timedelta | None = None,
    on_timeout: str = "fail",
    http_start: bool = False,
    schedule: str | None = None,
    schedule_timezone: str | None = None,
    missed_ticks: str = "skip",
    trigger_on_event: str | None = None,
    batch_size: int = 1,
    batch_timeout: float | timedelta | None = None,
    concurrency_key: Callable[..., str] | None = None,
    concurrency_limit: int | None = None,
    singleton_key: Callable[..., str] | None = None,
    on_conflict: str = "return",
    debounce: float | timedelta | None = None,
    debounce_key: Callable[..., str] | None = None,
) -> Any:
    """Declare a workflow: ``fn(ctx, *args, **kwargs)``, registered under ``name``.

    ``max_attempts`` > 1 runs a failed workflow again from its checkpoints (``retry=``
    gives the full policy); ``timeout`` fails a run that is not finished that many
    seconds after it started (``on_timeout="cancel"`` cancels it instead, so that its
    cleanup runs); ``http_start=True`` lets the HTTP API start it.

    ``schedule="*/15 * * * *"`` starts a run at every tick (read in ``schedule_timezone``,
    default TIME_ZONE), with ``scheduled_time=`` the tick; ``missed_ticks`` is "skip" or
    "catch_up". ``trigger_on_event="orders/created"`` starts a run for every emitted event
    of that name, or for every ``batch_size`` of them (a partial batch after
    ``batch_timeout`` seconds), with ``payload={"events": [...]}`` in emission order.

    Flow control per key, the key a function of the run's input (its arguments without
    ctx), computed at start: ``concurrency_key=fn, concurrency_limit=N`` lets at most N
    runs of a key run at once; ``singleton_key=fn`` allows one unfinished run per key (a
    start returns it, or with ``on_conflict="queue"`` waits behind it); ``debounce=``
    seconds collapses the starts of a key within that window into one run, started with
    the last input (``debounce_key=fn``, or the workflow's other key, or one for all).
    """

    def decorate(func: Callable[..., Any]) -> Workflow[Any, Any]:
        if not callable(func):
            raise TypeError("@durable.workflow decorates a function.")
        wf = Workflow(
            func,
            name=default_name(func) if name is None else name,
            queue=queue,
            retry=retry or RetryPolicy(max_attempts=max_attempts),
            timeout=optional_seconds(timeout, "A workflow timeout"),
            http_start=http_start,
            on_timeout=on_timeout,
            schedule=(
                None
                if schedule is None
                else ScheduleSpec.build(schedule, schedule_timezone, missed_ticks)
            ),
            trigger=(
                None
                if trigger_on_event is None
                else TriggerSpec.build(trigger_on_event, batch_size, batch_timeout)
            ),
            flow=FlowSpec.build(
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                singleton_key=singleton_key,
                on_conflict=on_conflict,
                debounce=debounce,
                debounce_key=debounce_key,
            ),
        )
        register(wf)
        return wf

    return decorate(fn) if fn is not None else decorate


@overload
def step(fn: Callable[P, R], /) -> StepFunction[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    atomic: bool = False,
    timeout: float | timedelta | None = None,
) -> Callable[[Callable[P, R]], StepFunction[P, R]]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    atomic: bool = False,
    timeout: float | timedelta | None = None,
) -> Any:
    """Declare a step function: inside a workflow each call is checkpointed.

    ``timeout`` (seconds or a timedelta) bounds each attempt of its body: an attempt that
    overruns fails with ``StepTimeout`` and is retried per ``retry``.
    """

    def decorate(func: Callable[..., Any]) -> StepFunction[Any, Any]:
        if not callable(func):
            raise TypeError("@durable.step decorates a function.")
        step_name = func.__name__ if name is None else name
        return StepFunction(func, name=step_name, retry=retry, atomic=atomic, timeout=timeout)

    return decorate(fn) if fn is not None else decorate
