"""``ctx``: the durable operations a workflow calls, replayed from their records.

Every operation takes the next *position*. If the run recorded an operation there, its
kind and name must match and its recorded outcome is returned (or raised); otherwise
the operation runs and its outcome is committed before the workflow sees it.

``BaseContext`` holds all the logic and never awaits; ``Context`` and ``AsyncContext``
are thin faces over it, the async one moving database work to the worker thread.
"""

from __future__ import annotations

import dataclasses
import inspect
import random as random_module
import time
import uuid as uuid_module
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone

from . import channels, serialization
from .channels import ReceivedEvent
from .checkpoints import Checkpoints
from .conf import get_settings
from .db import Claim, Row
from .exceptions import (
    DurableError,
    NonDeterministicWorkflow,
    StepFailed,
    SuspendRun,
    WorkflowTimedOut,
)
from .registry import StepFunction, check_name
from .retry import RetryPolicy
from .runtime import inside_step
from .statuses import StepStatus

Interrupt = Callable[[], BaseException | None]
_NO_RETRY = RetryPolicy(max_attempts=1)


class Clock:
    """The database's time, read at claim and advanced by the local monotonic clock."""

    def __init__(self, db_now: datetime) -> None:
        self._base = db_now
        self._started = time.monotonic()

    def now(self) -> datetime:
        """Return the current database time."""
        return self._base + timedelta(seconds=time.monotonic() - self._started)


@dataclasses.dataclass(slots=True)
class StreamCursor:
    """The next offset of a stream this run writes, and whether it closed it."""

    next_offset: int = 0
    closed: bool = False

    def advance(self, offset: int, kind: str) -> None:
        """Account for a recorded write (``stream``) or close (``close_stream``) at ``offset``."""
        self.next_offset = max(self.next_offset, offset + 1)
        self.closed = self.closed or kind == "close_stream"


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """A durable operation at a position, and its record if one exists."""

    position: int
    kind: str
    name: str
    attempts: int  # attempts recorded before this one
    replayed: bool  # the outcome is recorded; nothing runs


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds != seconds:  # NaN
        raise ValueError(f"{what} must be a number of seconds or a timedelta.")
    return seconds


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError("sleep_until() takes a datetime.")
    if timezone.is_naive(value):
        raise ValueError("sleep_until() takes an aware datetime (with a timezone).")
    return value


class BaseContext:
    """The state of one execution of a run, shared by the sync and async faces."""

    def __init__(
        self,
        *,
        claim: Claim,
        checkpoints: Checkpoints,
        interrupt: Interrupt | None = None,
    ) -> None:
        self._claim = claim
        self._checkpoints = checkpoints
        self._clock = Clock(claim.db_now)
        self._interrupt = interrupt
        self._position = 0
        self._streams: dict[str, StreamCursor] = {}
        # An error the run cannot recover from in this execution (non-determinism,
        # deadline). Raised again by every later operation, so swallowing it is futile.
        self.fatal: BaseException | None = None

    # --- read-only facts ---------------------------------------------------------

    @property
    def run_id(self) -> str:
        """Return the id of this run."""
        return str(self._claim.run_id)

    @property
    def workflow_name(self) -> str:
        """Return the registered name of the workflow."""
        return self._claim.workflow_name

    @property
    def attempt(self) -> int:
        """Return the workflow-level attempt, 1-based."""
        return self._claim.attempt

    @property
    def is_replaying(self) -> bool:
        """Return whether the next operation's outcome is already recorded."""
        return self._position < self._checkpoints.end

    @property
    def position(self) -> int:
        """Return the position the next durable operation will take."""
        return self._position

    @property
    def clock(self) -> Clock:
        """Return the database-synchronised clock of this execution."""
        return self._clock

    @property
    def claim(self) -> Claim:
        """Return the claim this execution runs under."""
        return self._claim

    @property
    def checkpoints(self) -> Checkpoints:
        """Return the run's records and their fenced writer."""
        return self._checkpoints

    @property
    def alias(self) -> str:
        """Return the database alias of the durable tables."""
        return self._checkpoints.alias

    @property
    def deadline(self) -> datetime | None:
        """Return when the run times out, if its workflow has a timeout."""
        return self._claim.deadline_at

    def unreached_operations(self) -> NonDeterministicWorkflow | None:
        """Return an error if the run recorded operations the code did not reach."""
        end = self._checkpoints.end
        if self._position >= end:
            return None
        record = self._checkpoints.get(end - 1)
        last = f"{record.kind} {record.name!r}" if record else "?"
        return NonDeterministicWorkflow(
            f"Run {self.run_id} of workflow {self.workflow_name!r} is not deterministic: it "
            f"recorded {end} operations (the last: {last}), but the code now finishes after "
            f"{self._position}. The workflow's code changed while this run was in flight; "
            "keep the old order of operations for runs in flight.",
            position=self._position,
            recorded=last,
            new="the end of the workflow",
        )

    # --- the machinery -----------------------------------------------------------

    def _begin(self, kind: str, name: str, *, empty_name: bool = False) -> Operation:
        if name or not empty_name:
            check_name(name, kind)
        if inside_step.get():
            raise DurableError(
                f"ctx.{kind}() was called inside a step's body; durable operations belong "
                "in the workflow function, not in steps."
            )
        if self.fatal is not None:
            raise self.fatal
        position = self._position
        self._position += 1
        record = self._checkpoints.get(position)
        if record is not None and (record.kind, record.name) != (kind, name):
            self.fatal = self._non_deterministic(position, record.kind, record.name, kind, name)
            raise self.fatal
        if record is not None and record.status not in StepStatus.unfinished():
            return Operation(position, kind, name, record.attempts, replayed=True)
        self._before_new_operation()
        attempts = record.attempts if record is not None else 0
        return Operation(position, kind, name, attempts, replayed=False)

    def _before_new_operation(self) -> None:
        self._check_deadline()
        signal = self._interrupt() if self._interrupt is not None else None
        if signal is not None:
            raise signal

    def _check_deadline(self) -> None:
        deadline = self._claim.deadline_at
        if deadline is not None and self._clock.now() >= deadline:
            self.fatal = WorkflowTimedOut(
                f"Run {self.run_id} of {self.workflow_name!r} passed its deadline "
                f"{deadline.isoformat()} (the workflow's timeout)."
            )
            raise self.fatal

    def _non_deterministic(
        self, position: int, old_kind: str, old_name: str, kind: str, name: str
    ) -> NonDeterministicWorkflow:
        recorded = f"{old_kind} {old_name!r}"
        new = f"{kind} {name!r}"
        return NonDeterministicWorkflow(
            f"Run {self.run_id} of workflow {self.workflow_name!r} is not deterministic: at "
            f"position {position} it recorded {recorded}, but the code now calls {new}. "
            "The workflow's code changed while this run was in flight, or it branches on "
            "something that is not recorded (time, randomness, I/O outside steps: use "
            "ctx.now(), ctx.random(), ctx.uuid() or a step). Keep the old order of "
            "operations for runs in flight: deploy the change under a new workflow name, or "
            "let old runs finish first.",
            position=position,
            recorded=recorded,
            new=new,
        )

    def suspend(
        self,
        wake_at: datetime | None,
        reason: str,
        *,
        wake_on: str | None = None,
        floor: int = 0,
    ) -> SuspendRun:
        """Return the signal that suspends the run until ``wake_at``, its deadline, or
        ``wake_on`` ("e:<event>", "m:<topic>") arrives."""
        self._check_deadline()
        deadline = self._claim.deadline_at
        if deadline is not None and (wake_at is None or wake_at > deadline):
            wake_at = deadline  # wake up to fail on time
        return SuspendRun(reason, wake_at=wake_at, wake_on=wake_on, floor=floor)

    def complete(self, op: Operation, value: Any, *, row: Row | None = None) -> Any:
        """Record ``value`` as the outcome of ``op`` (with ``row``); return it as replay will."""
        text = self._encode_result(op, value)
        self._checkpoints.write(
            op.position, op.kind, op.name, StepStatus.COMPLETED, result=text, row=row
        )
        return serialization.loads(text)

    def stream_cursor(self, key: str) -> StreamCursor:
        """Return where stream ``key`` stands: the run is its only writer, so its records say."""
        cursor = self._streams.get(key)
        if cursor is None:
            cursor = self._streams[key] = StreamCursor()
            for record in self._checkpoints.records():
                if record.name == key and record.kind in ("stream", "close_stream"):
                    cursor.advance(int(serialization.loads(record.result)), record.kind)
        return cursor

    def fail(self, op: Operation, exc: Exception) -> BaseException:
        """Record ``exc`` as the outcome of ``op``; return the exception to raise."""
        info = serialization.error_info(exc)
        text = serialization.dumps(info, what=f"The error of {op.kind} {op.name!r}")
        self._checkpoints.write(op.position, op.kind, op.name, StepStatus.FAILED, error=text)
        return self._step_exception(op.position, info, exc)

    def _replay(self, op: Operation) -> Any:
        record = self._checkpoints.get(op.position)
        assert record is not None
        if record.status == StepStatus.FAILED:
            raise self._step_exception(op.position, serialization.loads(record.error), None)
        return serialization.loads(record.result)

    def _step_exception(
        self, position: int, info: dict[str, Any], original: BaseException | None
    ) -> BaseException:
        """Return what the workflow sees for a failed step, marked with where it failed."""
        rebuilt = serialization.rebuild_exception(info)
        if rebuilt is not None:
            chosen = original if original is not None else rebuilt
            chosen.__durable_step__ = info.get("step")  # type: ignore[attr-defined]
            chosen.__durable_position__ = position  # type: ignore[attr-defined]
            return chosen
        failed = StepFailed(
            f"Step {info.get('step')!r} failed: {info.get('type')}: {info.get('message')}",
            error=info,
        )
        failed.__durable_traceback__ = info.get("traceback")  # type: ignore[attr-defined]
        failed.__durable_step__ = info.get("step")  # type: ignore[attr-defined]
        failed.__durable_position__ = position  # type: ignore[attr-defined]
        if original is not None:
            failed.__cause__ = original
        return failed

    @cached_property
    def _default_retry(self) -> RetryPolicy:
        return RetryPolicy(**get_settings().DEFAULT_STEP_RETRY)

    def _step_options(
        self, fn: Any, retry: RetryPolicy | None, atomic: bool | None
    ) -> tuple[Callable[..., Any], RetryPolicy, bool]:
        if isinstance(fn, StepFunction):
            policy = retry or fn.retry or self._default_retry
            return fn.fn, policy, fn.atomic if atomic is None else atomic
        if not callable(fn):
            raise TypeError(f"ctx.step() needs a callable, not {type(fn).__name__}.")
        return fn, retry or self._default_retry, bool(atomic)

    def _encode_result(self, op: Operation, value: Any) -> str:
        return serialization.dumps(value, what=f"The result of {op.kind} {op.name!r}")

    def _commit_result(self, op: Operation, text: str, attempt: int, started: float) -> Any:
        self._checkpoints.write(
            op.position,
            op.kind,
            op.name,
            StepStatus.COMPLETED,
            result=text,
            attempts=attempt,
            duration_ms=(time.monotonic() - started) * 1000,
        )
        # Return what replay will return: the value as it came back from JSON.
        return serialization.loads(text)

    def _complete(self, op: Operation, value: Any, attempt: int, started: float) -> Any:
        return self._commit_result(op, self._encode_result(op, value), attempt, started)

    def _record_failure(
        self, op: Operation, exc: Exception, policy: RetryPolicy, attempt: int, started: float
    ) -> BaseException:
        """Record a failed attempt; return the signal to raise (retry wait, or the error)."""
        duration = (time.monotonic() - started) * 1000
        info = serialization.error_info(exc, step=op.name, attempts=attempt)
        error_text = serialization.dumps(info, what=f"The error of step {op.name!r}")
        if policy.should_retry(exc, attempt):
            wake_at = self._clock.now() + timedelta(seconds=policy.delay(attempt, exc))
            self._checkpoints.write(
                op.position,
                op.kind,
                op.name,
                StepStatus.RETRYING,
                error=error_text,
                attempts=attempt,
                duration_ms=duration,
            )
            return self.suspend(wake_at, f"retry of step {op.name!r} (attempt {attempt + 1})")
        self._checkpoints.write(
            op.position,
            op.kind,
            op.name,
            StepStatus.FAILED,
            error=error_text,
            attempts=attempt,
            duration_ms=duration,
        )
        return self._step_exception(op.position, info, exc)

    def _run_atomic(
        self, op: Operation, body: Callable[..., Any], args: Any, kwargs: Any, attempt: int
    ) -> Any:
        started = time.monotonic()
        with transaction.atomic(using=self._checkpoints.alias):
            return self._complete(op, _call_body(body, args, kwargs), attempt, started)

    def _sleep_target(self, op: Operation, until: datetime | None, seconds: float) -> datetime:
        if op.replayed:
            return self._replay(op)
        target = until if until is not None else self._clock.now() + timedelta(seconds=seconds)
        self._commit_result(op, self._encode_result(op, target), 1, time.monotonic())
        return target

    def _sleep_signal(self, target: datetime) -> SuspendRun | None:
        if self._clock.now() >= target:
            return None
        return self.suspend(target, f"sleep until {target.isoformat()}")


def _raise_signal(value: Any) -> Any:
    """Raise ``value`` if a channel operation returned a signal, else return it."""
    if isinstance(value, BaseException):
        raise value
    return value


def _timeout(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = _seconds(value, "timeout")
    if seconds < 0:
        raise ValueError("A timeout cannot be negative.")
    return seconds


def _topic(topic: str | None) -> str:
    if topic is None:
        return ""
    return check_name(topic, "message topic")


def _call_body(body: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    token = inside_step.set(True)
    try:
        return body(*args, **kwargs)
    finally:
        inside_step.reset(token)


class Context(BaseContext):
    """``ctx`` of a plain ``def`` workflow."""

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        atomic: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once and checkpoint its result under ``name``.

        ``atomic=True`` runs ``fn`` and the checkpoint in one transaction, so its ORM
        writes happen exactly once. Failed attempts are retried by ``retry``.
        """
        body, policy, is_atomic = self._step_options(fn, retry, atomic)
        if inspect.iscoroutinefunction(body):
            raise TypeError(f"Step {name!r} is async; only an async workflow can await it.")
        op = self._begin("step", name)
        if op.replayed:
            return self._replay(op)
        attempt = op.attempts + 1
        started = time.monotonic()
        try:
            if is_atomic:
                return self._run_atomic(op, body, args, kwargs, attempt)
            text = self._encode_result(op, _call_body(body, args, kwargs))
        except Exception as exc:
            # The signal may be ``exc`` itself; chaining it to itself would loop.
            raise self._record_failure(op, exc, policy, attempt, started)  # noqa: B904
        return self._commit_result(op, text, attempt, started)

    def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Suspend the run for ``duration`` (seconds or a timedelta), freeing the worker."""
        seconds = _seconds(duration, "sleep()")
        target = self._sleep_target(self._begin("sleep", name), None, seconds)
        signal = self._sleep_signal(target)
        if signal is not None:
            raise signal

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        """Suspend the run until ``when`` (an aware datetime), freeing the worker."""
        target = self._sleep_target(self._begin("sleep", name), _aware(when), 0)
        signal = self._sleep_signal(target)
        if signal is not None:
            raise signal

    def now(self) -> datetime:
        """Return the current time, recorded once so replay sees the same value."""
        return self._value("now", self._clock.now)

    def uuid(self) -> uuid_module.UUID:
        """Return a random UUID, recorded once so replay sees the same value."""
        return self._value("uuid", uuid_module.uuid4)

    def random(self) -> float:
        """Return a random float in [0, 1), recorded once so replay sees the same value."""
        return self._value("random", random_module.random)

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        op = self._begin(kind, kind)
        if op.replayed:
            return self._replay(op)
        return self._complete(op, make(), 1, time.monotonic())

    def wait_for_event(
        self, name: str, timeout: float | timedelta | None = None, model: Any = None
    ) -> ReceivedEvent:
        """Suspend until an event ``name`` exists and return it.

        An emission from before the wait counts. A run receives the newest emission it
        has not received yet. ``EventTimeout`` after ``timeout``; ``model`` (a pydantic
        model) validates the data.
        """
        op = self._begin("event", name)
        if op.replayed:
            return channels.received(self._replay(op), model)
        outcome = channels.wait_for_event(self, op, name, _timeout(timeout))
        return channels.received(_raise_signal(outcome), model)

    def emit_event(self, name: str, data: Any = None, *, source: str = "", type: str = "") -> int:
        """Emit an event, once for this point of the workflow; return its id."""
        op = self._begin("emit", name)
        if op.replayed:
            return int(self._replay(op))
        return channels.emit_event(self, op, name, data, source, type)

    def recv(self, topic: str | None = None, timeout: float | timedelta | None = None) -> Any:
        """Take the next message sent to this run on ``topic``; ``None`` after ``timeout``."""
        name = _topic(topic)
        op = self._begin("recv", name, empty_name=True)
        if op.replayed:
            return self._replay(op).get("message")
        return _raise_signal(channels.recv(self, op, name, _timeout(timeout))).get("message")

    def set_value(self, key: str, value: Any) -> None:
        """Publish ``value`` under ``key`` (the newest wins; every version is kept)."""
        op = self._begin("value", key)
        if not op.replayed:
            channels.set_value(self, op, key, value)

    def set_progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Publish the ``"progress"`` value: done, total, percent and message."""
        self.set_value("progress", channels.progress(done, total, message))

    def write_stream(self, key: str, value: Any) -> int:
        """Append ``value`` to the stream ``key``; return its offset (0, 1, 2, ...)."""
        op = self._begin("stream", key)
        if op.replayed:
            return int(self._replay(op))
        return channels.write_stream(self, op, key, value)

    def close_stream(self, key: str) -> None:
        """Close the stream ``key``: readers that follow it stop."""
        op = self._begin("close_stream", key)
        if not op.replayed:
            channels.write_stream(self, op, key, None, closes=True)


class AsyncContext(BaseContext):
    """``ctx`` of an ``async def`` workflow: the same operations, awaited."""

    async def _db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Database work runs in the worker thread that owns this run's connection.
        return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        atomic: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn`` once (awaiting it if async) and checkpoint its result under ``name``.

        ``atomic=True`` needs a synchronous ``fn``: Django's transactions are synchronous.
        """
        body, policy, is_atomic = self._step_options(fn, retry, atomic)
        is_async = inspect.iscoroutinefunction(body)
        if is_atomic and is_async:
            raise TypeError(
                f"Step {name!r} is atomic and async; Django runs transactions synchronously, "
                "so an atomic step must be a plain def."
            )
        op = self._begin("step", name)
        if op.replayed:
            return self._replay(op)
        attempt = op.attempts + 1
        started = time.monotonic()
        try:
            if is_atomic:
                return await self._db(self._run_atomic, op, body, args, kwargs, attempt)
            if is_async:
                token = inside_step.set(True)
                try:
                    value = await body(*args, **kwargs)
                finally:
                    inside_step.reset(token)
            else:
                value = await self._db(_call_body, body, args, kwargs)
            text = self._encode_result(op, value)
        except Exception as exc:
            signal = await self._db(self._record_failure, op, exc, policy, attempt, started)
            raise signal  # noqa: B904  (may be ``exc`` itself)
        return await self._db(self._commit_result, op, text, attempt, started)

    async def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Suspend the run for ``duration`` (seconds or a timedelta), freeing the worker."""
        seconds = _seconds(duration, "sleep()")
        op = self._begin("sleep", name)
        target = await self._db(self._sleep_target, op, None, seconds)
        signal = self._sleep_signal(target)
        if signal is not None:
            raise signal

    async def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        """Suspend the run until ``when`` (an aware datetime), freeing the worker."""
        op = self._begin("sleep", name)
        target = await self._db(self._sleep_target, op, _aware(when), 0)
        signal = self._sleep_signal(target)
        if signal is not None:
            raise signal

    async def now(self) -> datetime:
        """Return the current time, recorded once so replay sees the same value."""
        return await self._value("now", self._clock.now)

    async def uuid(self) -> uuid_module.UUID:
        """Return a random UUID, recorded once so replay sees the same value."""
        return await self._value("uuid", uuid_module.uuid4)

    async def random(self) -> float:
        """Return a random float in [0, 1), recorded once so replay sees the same value."""
        return await self._value("random", random_module.random)

    async def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        op = self._begin(kind, kind)
        if op.replayed:
            return self._replay(op)
        return await self._db(self._complete, op, make(), 1, time.monotonic())

    async def wait_for_event(
        self, name: str, timeout: float | timedelta | None = None, model: Any = None
    ) -> ReceivedEvent:
        """Suspend until an event ``name`` exists and return it (see ``Context``)."""
        op = self._begin("event", name)
        if op.replayed:
            return channels.received(self._replay(op), model)
        outcome = await self._db(channels.wait_for_event, self, op, name, _timeout(timeout))
        return channels.received(_raise_signal(outcome), model)

    async def emit_event(
        self, name: str, data: Any = None, *, source: str = "", type: str = ""
    ) -> int:
        """Emit an event, once for this point of the workflow; return its id."""
        op = self._begin("emit", name)
        if op.replayed:
            return int(self._replay(op))
        return int(await self._db(channels.emit_event, self, op, name, data, source, type))

    async def recv(self, topic: str | None = None, timeout: float | timedelta | None = None) -> Any:
        """Take the next message sent to this run on ``topic``; ``None`` after ``timeout``."""
        name = _topic(topic)
        op = self._begin("recv", name, empty_name=True)
        if op.replayed:
            return self._replay(op).get("message")
        outcome = await self._db(channels.recv, self, op, name, _timeout(timeout))
        return _raise_signal(outcome).get("message")

    async def set_value(self, key: str, value: Any) -> None:
        """Publish ``value`` under ``key`` (the newest wins; every version is kept)."""
        op = self._begin("value", key)
        if not op.replayed:
            await self._db(channels.set_value, self, op, key, value)

    async def set_progress(
        self, done: float, total: float | None = None, message: str = ""
    ) -> None:
        """Publish the ``"progress"`` value: done, total, percent and message."""
        await self.set_value("progress", channels.progress(done, total, message))

    async def write_stream(self, key: str, value: Any) -> int:
        """Append ``value`` to the stream ``key``; return its offset (0, 1, 2, ...)."""
        op = self._begin("stream", key)
        if op.replayed:
            return int(self._replay(op))
        return int(await self._db(channels.write_stream, self, op, key, value))

    async def close_stream(self, key: str) -> None:
        """Close the stream ``key``: readers that follow it stop."""
        op = self._begin("close_stream", key)
        if not op.replayed:
            await self._db(channels.write_stream, self, op, key, None, closes=True)
