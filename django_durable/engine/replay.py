"""Replay: the state of one execution of a run, and the operations' shared machinery.

Every operation takes the next *position*. If the run recorded an operation there, its
kind and name must match and its recorded outcome is returned (or raised); otherwise
the operation runs and its outcome is committed before the workflow sees it.

``BaseContext`` holds all the logic and never awaits; ``Context`` and ``AsyncContext``
are thin faces over it, the async one moving database work to the worker thread.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import datetime
from functools import cached_property
from typing import Any

from ..core import serialization
from ..core.conf import get_settings
from ..core.names import check_name
from ..core.retry import RetryPolicy
from ..core.runtime import current_step
from ..core.statuses import StepStatus
from ..exceptions import (
    Cancelled,
    DurableError,
    NonDeterministicWorkflow,
    StepFailed,
    SuspendRun,
    WorkflowTimedOut,
)
from ..store.offloop import call_off_loop
from ..store.records import Claim, Row
from . import steps
from .checkpoints import Checkpoints
from .operations import Clock, Interrupt, Operation, StreamCursor


class BaseContext:
    """The state of one execution of a run, shared by the sync and async faces."""

    def __init__(
        self,
        *,
        claim: Claim,
        checkpoints: Checkpoints,
        interrupt: Interrupt | None = None,
        cancel_on_timeout: bool = False,
    ) -> None:
        self._claim = claim
        self._checkpoints = checkpoints
        self._clock = Clock(claim.db_now, claim.read_at, claim.sent_at)
        self._interrupt = interrupt
        # The workflow's on_timeout="cancel": its deadline cancels it instead of failing it.
        self._cancel_on_timeout = cancel_on_timeout
        self._shield = 0
        self._position = 0
        self._streams: dict[str, StreamCursor] = {}
        # An error the run cannot recover from in this execution (non-determinism,
        # deadline). Raised again by every later operation, so swallowing it is futile.
        self.fatal: BaseException | None = None
        # A saga ran its compensations: the run fails now, whatever the retry policy says.
        self.compensated = False
        self._retry_at: dict[int, datetime | None] = {}

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

    def workflow_retry_at(self, policy: RetryPolicy, exc: BaseException) -> datetime | None:
        """Return when the workflow runs again after ``exc``, or None if the run fails.

        Decided once per exception (the delay has jitter), so that a saga and the end of
        the execution agree; never after compensations ran.
        """
        if self.compensated:
            return None
        if id(exc) not in self._retry_at:
            wake_at = None
            if policy.should_retry(exc, self.attempt):
                wake_at = self._clock.after(policy.delay(self.attempt, exc))
                if self.deadline is not None and wake_at >= self.deadline:
                    wake_at = None
            self._retry_at[id(exc)] = wake_at
        return self._retry_at[id(exc)]

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
        if current_step.get() is not None:
            raise DurableError(
                f"ctx.{kind}() was called inside a step's body; durable operations belong "
                "in the workflow function, not in steps."
            )
        if self.fatal is not None:
            raise self.fatal
        position = self._position
        self._position += 1
        record = self._checkpoints.get(position)
        if record is not None and record.kind == "cancel":
            # The run was cancelled here the first time through: it is again.
            raise Cancelled(str(serialization.loads(record.result)["reason"]))
        if record is not None and (record.kind, record.name) != (kind, name):
            self.fatal = self._non_deterministic(position, record.kind, record.name, kind, name)
            raise self.fatal
        if record is not None and record.status not in StepStatus.unfinished():
            return Operation(position, kind, name, record.attempts, replayed=True)
        self._before_new_operation(position)
        attempts = record.attempts if record is not None else 0
        return Operation(position, kind, name, attempts, replayed=False)

    def _before_new_operation(self, position: int) -> None:
        self._check_deadline(position)
        signal = self._interrupt() if self._interrupt is not None else None
        if isinstance(signal, Cancelled):
            signal = None if self._shield else self._cancel_here(position, signal)
        if signal is not None:
            raise signal

    def _cancel_here(self, position: int, signal: Cancelled) -> Cancelled:
        """Record that the run was cancelled at ``position``, so replay cancels it there too.

        An async workflow gets here on its event loop's thread, where Django allows no
        query: the marker is then written from a thread of its own.
        """
        marker = serialization.dumps({"reason": signal.reason}, what="A cancellation")
        write = self._checkpoints.write
        call_off_loop(write, position, "cancel", "cancel", StepStatus.COMPLETED, result=marker)
        return signal

    def pending_cancel(self) -> Cancelled | None:
        """Return the cancellation this execution should act on now (none inside a shield)."""
        if self._shield:
            return None
        passed = self._deadline_passed()
        if passed is not None and self._cancel_on_timeout:
            return Cancelled(passed)
        signal = self._interrupt() if self._interrupt is not None else None
        return signal if isinstance(signal, Cancelled) else None

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """Run the block's durable operations even if the run is cancelled (cleanup)."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1

    def _deadline_passed(self) -> str | None:
        """Return why the run is out of time, if it is (never inside a shield)."""
        deadline = self._claim.deadline_at
        if deadline is None or self._shield or self._clock.now() < deadline:
            return None
        return (
            f"Run {self.run_id} of {self.workflow_name!r} passed its deadline "
            f"{deadline.isoformat()} (the workflow's timeout)."
        )

    def _check_deadline(self, position: int) -> None:
        """Fail (or cancel, with on_timeout="cancel") a run out of time, at a new operation."""
        message = self._deadline_passed()
        if message is None:
            return
        if self._cancel_on_timeout:
            raise self._cancel_here(position, Cancelled(message))
        self.fatal = WorkflowTimedOut(message)
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
        keys: tuple[tuple[str, int], ...] = (),
    ) -> SuspendRun:
        """Return the signal that suspends the run until ``wake_at``, its deadline, or
        ``wake_on`` ("e:<event>", "m:<topic>", "c:<child run>", "cb:<callback>"; "f:any"
        for the first of ``keys``) arrives."""
        if self._shield:  # cleanup waits its own time, deadline or cancellation or not
            return SuspendRun(
                reason, wake_at=wake_at, wake_on=wake_on, floor=floor, keys=keys, shielded=True
            )
        passed = self._deadline_passed()
        if passed is not None and not self._cancel_on_timeout:
            self.fatal = WorkflowTimedOut(passed)
            raise self.fatal
        # Out of time with on_timeout="cancel": wake at once; the next operation cancels.
        deadline = self._claim.deadline_at
        if deadline is not None and (wake_at is None or wake_at > deadline):
            wake_at = deadline  # wake up to end on time
        return SuspendRun(reason, wake_at=wake_at, wake_on=wake_on, floor=floor, keys=keys)

    def complete(self, op: Operation, value: Any, *, row: Row | None = None) -> Any:
        """Record ``value`` as the outcome of ``op`` (with ``row``); return it as replay will."""
        text = self.encode_result(op, value)
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
                elif record.name == key and record.kind == "stream_many":  # [first, stop]
                    cursor.advance(int(serialization.loads(record.result)[1]) - 1, record.kind)
        return cursor

    def fail(self, op: Operation, exc: Exception) -> BaseException:
        """Record ``exc`` as the outcome of ``op``; return the exception to raise."""
        info = serialization.error_info(exc)
        text = serialization.dumps(info, what=f"The error of {op.kind} {op.name!r}")
        self._checkpoints.write(op.position, op.kind, op.name, StepStatus.FAILED, error=text)
        return self.step_exception(op.position, info, exc)

    def replay(self, op: Operation) -> Any:
        record = self._checkpoints.get(op.position)
        assert record is not None
        if record.status == StepStatus.FAILED:
            raise self.step_exception(op.position, serialization.loads(record.error), None)
        return serialization.loads(record.result)

    def step_exception(
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
    def default_retry(self) -> RetryPolicy:
        """Return the retry policy of steps that name none (``DEFAULT_STEP_RETRY``)."""
        return RetryPolicy(**get_settings().DEFAULT_STEP_RETRY)

    def encode_result(self, op: Operation, value: Any) -> str:
        return serialization.dumps(value, what=f"The result of {op.kind} {op.name!r}")

    def commit_result(self, op: Operation, text: str, attempt: int, started: float) -> Any:
        # A step that succeeded after failed attempts keeps their errors, for people.
        earlier = steps.earlier_attempts(self, op) if op.attempts else []
        history = {"earlier": earlier}
        error = serialization.dumps(history, what="The earlier attempts") if earlier else None
        self._checkpoints.write(
            op.position,
            op.kind,
            op.name,
            StepStatus.COMPLETED,
            result=text,
            error=error,
            attempts=attempt,
            duration_ms=(time.monotonic() - started) * 1000,
        )
        # Return what replay will return: the value as it came back from JSON.
        return serialization.loads(text)

    def complete_value(self, op: Operation, value: Any, attempt: int, started: float) -> Any:
        return self.commit_result(op, self.encode_result(op, value), attempt, started)

    def _sleep_target(self, op: Operation, until: datetime | None, seconds: float) -> datetime:
        if op.replayed:
            return self.replay(op)
        now = self._clock.now()
        target = until if until is not None else self._clock.after(seconds)
        # A sleep lasts from now to its target: the record says so from the start.
        slept = max(0.0, (target - now).total_seconds()) * 1000
        self._checkpoints.write(
            op.position,
            op.kind,
            op.name,
            StepStatus.COMPLETED,
            result=self.encode_result(op, target),
            duration_ms=slept,
        )
        return target

    def _sleep_signal(self, target: datetime) -> SuspendRun | None:
        if self._clock.now() >= target:
            return None
        cancel = self.pending_cancel()
        if cancel is not None:  # cut short: the run is cancelled right after its sleep
            raise self._cancel_next(cancel)
        return self.suspend(target, f"sleep until {target.isoformat()}")

    def _cancel_next(self, signal: Cancelled) -> Cancelled:
        """Take the next position as the cancellation point (recorded, or found there)."""
        position = self._position
        self._position += 1
        record = self._checkpoints.get(position)
        if record is None or record.status in StepStatus.unfinished():
            self._cancel_here(position, signal)
        return signal

    def _patch(self, change_id: str) -> tuple[bool, Operation | None]:
        """Decide ``ctx.patched(change_id)``: the answer, and the marker to record if any.

        A run that reaches this point for the first time records a marker and gets True.
        A run recorded by older code has a different operation here: it gets False, and
        the marker takes no position, so its old records keep matching.
        """
        check_name(change_id, "patch")
        record = self._checkpoints.get(self._position)
        if record is not None and (record.kind, record.name) == ("patch", change_id):
            self._position += 1
            return True, None
        if record is not None:
            return False, None
        return True, self._begin("patch", change_id)
