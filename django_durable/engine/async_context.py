"""``AsyncContext``: the ``ctx`` of an ``async def`` workflow: the same operations, awaited.

Database work moves to the worker thread that owns the run's connection.
"""

from __future__ import annotations

import inspect
import random as random_module
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from ..core.durations import optional_seconds, to_seconds
from ..core.retry import RetryPolicy
from . import callbacks, channels, children, steps, waits
from .callbacks import Callback
from .channels import ReceivedEvent
from .children import ChildHandle
from .context import message_topic
from .operations import aware, raise_signal
from .replay import BaseContext
from .saga import AsyncSaga
from .waits import Winner


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
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn`` once (awaiting it if async) and checkpoint its result under ``name``.

        ``atomic=True`` needs a synchronous ``fn``: Django's transactions are synchronous.
        ``timeout`` bounds one attempt: an async body is cancelled at the deadline, a plain
        one abandoned (see ``Context.step``); the attempt fails with ``StepTimeout``.
        """
        options = steps.options(
            name, fn, retry=retry, atomic=atomic, timeout=timeout, default=self.default_retry
        )
        is_async = inspect.iscoroutinefunction(options.body)
        if options.atomic and is_async:
            raise TypeError(
                f"Step {name!r} is atomic and async; Django runs transactions synchronously, "
                "so an atomic step must be a plain def."
            )
        op = self._begin("step", name)
        if op.replayed:
            return self.replay(op)
        attempt = op.attempts + 1
        info = steps.info(self, op, attempt, options)
        began = await self._db(
            self.checkpoints.start, op.position, op.kind, op.name, defer=not options.atomic
        )
        started = time.monotonic()
        try:
            if options.atomic:
                body = options.body
                return await self._db(steps.run_atomic, self, op, body, args, kwargs, info)
            try:
                if is_async:
                    value = await steps.await_body(options, args, kwargs, info)
                else:
                    value = await self._db(steps.run_body, options, args, kwargs, info)
            finally:
                if began.pending:  # may wait for the record being written: off the loop
                    await self._db(began.settle)
            text = self.encode_result(op, value)
        except Exception as exc:
            policy = options.policy
            signal = await self._db(steps.record_failure, self, op, exc, policy, attempt, started)
            raise signal  # noqa: B904  (may be ``exc`` itself)
        return await self._db(self.commit_result, op, text, attempt, started)

    def saga(self) -> AsyncSaga:
        """Return compensations to run if the run fails for good: ``async with ctx.saga()``."""
        return AsyncSaga(self)

    async def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Suspend the run for ``duration`` (seconds or a timedelta), freeing the worker."""
        seconds = to_seconds(duration, "sleep()", negative=True)
        op = self._begin("sleep", name)
        target = await self._db(self._sleep_target, op, None, seconds)
        signal = self._sleep_signal(target)
        if signal is not None:
            raise signal

    async def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        """Suspend the run until ``when`` (an aware datetime), freeing the worker."""
        op = self._begin("sleep", name)
        target = await self._db(self._sleep_target, op, aware(when), 0)
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
            return self.replay(op)
        return await self._db(self.complete_value, op, make(), 1, time.monotonic())

    async def wait_for_event(
        self, name: str, timeout: float | timedelta | None = None, model: Any = None
    ) -> ReceivedEvent:
        """Suspend until an event ``name`` exists and return it (see ``Context``)."""
        op = self._begin("event", name)
        if op.replayed:
            return channels.received(self.replay(op), model)
        outcome = await self._db(
            channels.wait_for_event, self, op, name, optional_seconds(timeout, "timeout=")
        )
        return channels.received(raise_signal(outcome), model)

    async def emit_event(
        self, name: str, data: Any = None, *, source: str = "", type: str = ""
    ) -> int:
        """Emit an event, once for this point of the workflow; return its id."""
        op = self._begin("emit", name)
        if op.replayed:
            return int(self.replay(op))
        return int(await self._db(channels.emit_event, self, op, name, data, source, type))

    async def recv(
        self,
        topic: str | None = None,
        timeout: float | timedelta | None = None,
        *,
        default: Any = None,
    ) -> Any:
        """Take the next message sent to this run on ``topic``; ``default`` after ``timeout``."""
        name = message_topic(topic)
        op = self._begin("recv", name, empty_name=True)
        if op.replayed:
            return self.replay(op).get("message", default)
        outcome = await self._db(
            channels.recv, self, op, name, optional_seconds(timeout, "timeout=")
        )
        return raise_signal(outcome).get("message", default)

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
            return int(self.replay(op))
        return int(await self._db(channels.write_stream, self, op, key, value))

    async def write_stream_many(self, key: str, values: Iterable[Any]) -> range:
        """Append ``values`` to the stream ``key`` in one commit; return their offsets."""
        items = channels.stream_items(key, values)
        op = self._begin("stream_many", key)
        if op.replayed:
            return channels.replayed_offsets(self.replay(op))
        offsets: range = await self._db(channels.write_stream_many, self, op, key, items)
        return offsets

    async def close_stream(self, key: str) -> None:
        """Close the stream ``key``: readers that follow it stop."""
        op = self._begin("close_stream", key)
        if not op.replayed:
            await self._db(channels.write_stream, self, op, key, None, closes=True)

    async def first_of(self, *sources: Any) -> Winner:
        """Wait for whichever comes first and return it as a ``Winner`` (see ``Context``)."""
        things = waits.check(sources)
        op = self._begin("first_of", waits.operation_name(things))
        if op.replayed:
            return waits.won(self.replay(op), things, op.position)
        outcome = await self._db(waits.first_of, self, op, things)
        return waits.won(raise_signal(outcome), things, op.position)

    async def callback(
        self, *, timeout: float | timedelta | None = None, name: str = "callback"
    ) -> Callback:
        """Make a callback for an outside system to complete (or fail), once."""
        op = self._begin("callback", name)
        if op.replayed:
            return callbacks.made(self.replay(op), self)
        seconds = optional_seconds(timeout, "timeout=")
        return callbacks.made(await self._db(callbacks.create, self, op, seconds), self)

    async def _wait_callback(self, callback: Callback) -> Any:
        op = self._begin("wait_callback", callback.id)
        if op.replayed:
            document = self.replay(op)
        else:
            document = raise_signal(await self._db(callbacks.wait, self, op, callback))
        return callbacks.outcome(document, callback.id, op.position)

    # --- child runs, cancellation, versions -------------------------------------------

    async def start_child(self, workflow: Any, *args: Any, **kwargs: Any) -> ChildHandle:
        """Start a child run of ``workflow``; await ``handle.result()`` to wait for it."""
        options = children.start_options(workflow)
        op = self._begin("child", options.workflow.name)
        if op.replayed:
            run_id = self.replay(op)
        else:
            run_id = await self._db(children.start, self, op, options, args, kwargs)
        return ChildHandle(run_id, options.workflow.name, op.position, self)

    async def run_child(self, workflow: Any, *args: Any, **kwargs: Any) -> Any:
        """Start a child run and wait for its result."""
        handle = await self.start_child(workflow, *args, **kwargs)
        return await handle.result()

    async def gather(self, *handles: ChildHandle) -> list[Any]:
        """Wait for every child and return their results in order."""
        op = self._begin("gather", f"{len(handles)} child runs")
        if op.replayed:
            return children.gathered(self.replay(op), list(handles))
        outcome = await self._db(children.gather, self, op, list(handles))
        return children.gathered(raise_signal(outcome), list(handles))

    async def _child_result(self, handle: ChildHandle) -> Any:
        op = self._begin("child_result", handle.run_id)
        if op.replayed:
            document = self.replay(op)
        else:
            document = raise_signal(await self._db(children.result, self, op, handle))
        children.raise_failed(document, handle)
        return document["result"]

    async def _cancel_child(self, handle: ChildHandle, reason: str = "") -> None:
        op = self._begin("cancel_child", handle.run_id)
        if not op.replayed:
            await self._db(children.cancel, self, op, handle, reason)

    async def patched(self, change_id: str) -> bool:
        """Return True where the new code of ``change_id`` runs, False for older runs."""
        answer, op = self._patch(change_id)
        if op is not None:
            await self._db(self.commit_result, op, "true", 1, time.monotonic())
        return answer
