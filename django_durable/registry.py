"""Declaring workflows and steps, and finding them again by name."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings as django_settings
from django.utils.module_loading import autodiscover_modules

from .conf import get_settings
from .exceptions import DurableError, WorkflowNotFound
from .retry_policy import RetryPolicy
from .runtime import current_context, current_step

if TYPE_CHECKING:
    from .client import RunHandle

P = ParamSpec("P")
R = TypeVar("R")

MAX_NAME_LENGTH = 200

_workflows: dict[str, Workflow[Any, Any]] = {}


def check_name(name: str, what: str) -> str:
    """Return ``name`` if it can name a workflow or an operation, else raise ``ValueError``."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        article = "An" if what[:1] in "aeiou" else "A"
        if not isinstance(name, str):
            shown = f"a value of type {type(name).__name__}"
        else:
            shown = repr(name[:60] + "…" if len(name) > 60 else name)
        raise ValueError(
            f"{article} {what} name must be a non-empty string of at most {MAX_NAME_LENGTH} "
            f"characters, not {shown}."
        )
    return name


def _default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds != seconds:
        raise ValueError(f"{what} must be a number of seconds, not NaN.")
    if seconds < 0:
        raise ValueError(f"{what} cannot be negative.")
    return seconds


# The cron macros with a fixed time of day (@hourly is the one without).
FIXED_TIME_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight"}
)


def check_cron(cron: str) -> str:
    """Return ``cron`` if it is five cron fields (or a macro like @daily); else ``ValueError``."""
    from croniter import croniter  # imported when a schedule is declared

    text = cron.strip() if isinstance(cron, str) else ""
    five_fields = len(text.split()) == 5 or text.lower() in FIXED_TIME_MACROS | {"@hourly"}
    if not five_fields or not croniter.is_valid(text):
        raise ValueError(
            f"{cron!r} is not a cron expression: give five fields, minute hour day-of-month "
            "month day-of-week (*/15 * * * *), or @hourly, @daily, @weekly, @monthly, @yearly."
        )
    return text


def check_time_zone(time_zone: str) -> ZoneInfo:
    """Return the zone named ``time_zone`` (an IANA name); else ``ValueError``."""
    try:
        return ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"{time_zone!r} is not a known time zone: give an IANA name such as "
            "'UTC' or 'Europe/Paris'."
        ) from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleSpec:
    """``@durable.workflow(schedule=...)``: a cron expression, its time zone, missed ticks."""

    cron: str
    time_zone: str
    missed_ticks: str

    @classmethod
    def build(cls, cron: str, time_zone: str | None, missed_ticks: str) -> ScheduleSpec:
        """Validate the options and return the spec (``ValueError`` if they are wrong)."""
        from .statuses import MissedTicks

        cron = check_cron(cron)  # the same rule as the admin's: five fields or a macro
        zone = time_zone or django_settings.TIME_ZONE or "UTC"
        check_time_zone(zone)
        if missed_ticks not in MissedTicks.values:
            raise ValueError(f"missed_ticks= must be one of {', '.join(MissedTicks.values)}.")
        return cls(cron=cron, time_zone=zone, missed_ticks=missed_ticks)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TriggerSpec:
    """``@durable.workflow(trigger_on_event=...)``: which event, in batches of what size."""

    event: str
    batch_size: int
    # Seconds a partial batch waits for more events before it starts a run anyway.
    batch_timeout: float

    @classmethod
    def build(
        cls, event: str, batch_size: int, batch_timeout: float | timedelta | None
    ) -> TriggerSpec:
        """Validate the options and return the spec (``ValueError`` if they are wrong)."""
        check_name(event, "trigger event")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError("batch_size= must be a whole number of at least 1.")
        if batch_size > 1 and batch_timeout is None:
            raise ValueError(
                "batch_size= > 1 needs batch_timeout=: how long a partial batch waits."
            )
        return cls(
            event=event,
            batch_size=batch_size,
            batch_timeout=_seconds(batch_timeout, "batch_timeout") or 0.0,
        )


_LONGEST_DELAY = 100 * 365 * 86400


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
                raise ValueError("delay= takes seconds, a timedelta, or an aware datetime.")
        elif delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, (int, float, timedelta)):
                raise TypeError("delay= takes seconds, a timedelta, or an aware datetime.")
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
            if not seconds >= 0:  # NaN too
                raise ValueError("delay= cannot be negative.")
            if seconds >= _LONGEST_DELAY:  # infinity too
                raise ValueError("delay= must be under 100 years.")

    def start(self, *args: Any, **kwargs: Any) -> RunHandle:
        """Start a run of the workflow with these options and arguments."""
        from .client import start_run

        return start_run(self, args, kwargs)

    async def astart(self, *args: Any, **kwargs: Any) -> RunHandle:
        """Start a run of the workflow with these options and arguments (async)."""
        from .client import astart_run

        return await astart_run(self, args, kwargs)


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
    ) -> None:
        self.fn = fn
        self.name = check_name(name, "step")
        self.retry = retry
        self.atomic = atomic
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


def register(wf: Workflow[Any, Any]) -> None:
    """Add ``wf`` to the registry; a different function under a taken name is an error."""
    existing = _workflows.get(wf.name)
    if existing is not None and _default_name(existing.fn) != _default_name(wf.fn):
        raise DurableError(
            f"Workflow name {wf.name!r} is registered twice: by "
            f"{_default_name(existing.fn)} and by {_default_name(wf.fn)}. "
            "Give one of them another name=."
        )
    _workflows[wf.name] = wf


def unregister(name: str) -> None:
    """Remove a workflow from the registry (for tests)."""
    _workflows.pop(name, None)


def get_workflow(name: str) -> Workflow[Any, Any]:
    """Return the workflow registered as ``name`` or raise ``WorkflowNotFound``."""
    try:
        return _workflows[name]
    except KeyError:
        known = ", ".join(sorted(_workflows)) or "none"
        raise WorkflowNotFound(
            f"No workflow named {name!r} is registered (registered: {known}). "
            f"Define it with @durable.workflow in an installed app's "
            f"{get_settings().AUTODISCOVER_MODULE!r} module."
        ) from None


def triggered_by(event: str) -> list[Workflow[Any, Any]]:
    """Return the workflows that ``trigger_on_event`` the event ``event``."""
    return [
        wf for wf in _workflows.values() if wf.trigger is not None and wf.trigger.event == event
    ]


def registered_workflows() -> dict[str, Workflow[Any, Any]]:
    """Return a copy of the registry, name to workflow."""
    return dict(_workflows)


def autodiscover() -> None:
    """Import the workflows module of every installed app."""
    autodiscover_modules(get_settings().AUTODISCOVER_MODULE)


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
    """

    def decorate(func: Callable[..., Any]) -> Workflow[Any, Any]:
        if not callable(func):
            raise TypeError("@durable.workflow decorates a function.")
        wf = Workflow(
            func,
            name=_default_name(func) if name is None else name,
            queue=queue,
            retry=retry or RetryPolicy(max_attempts=max_attempts),
            timeout=_seconds(timeout, "A workflow timeout"),
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
) -> Callable[[Callable[P, R]], StepFunction[P, R]]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retry: RetryPolicy | None = None,
    atomic: bool = False,
) -> Any:
    """Declare a step function: inside a workflow each call is checkpointed."""

    def decorate(func: Callable[..., Any]) -> StepFunction[Any, Any]:
        if not callable(func):
            raise TypeError("@durable.step decorates a function.")
        step_name = func.__name__ if name is None else name
        return StepFunction(func, name=step_name, retry=retry, atomic=atomic)

    return decorate(fn) if fn is not None else decorate
