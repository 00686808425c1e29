"""``Context``: the ``ctx`` of a plain ``def`` workflow, over the replay machinery."""

from __future__ import annotations

import inspect
import random as random_module
import time
import uuid as uuid_module
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from ..core.durations import optional_seconds, to_seconds
from ..core.names import check_name
from ..core.retry import RetryPolicy
from . import callbacks, channels, children, steps, waits
from .callbacks import Callback
from .channels import ReceivedEvent
from .children import ChildHandle
from .operations import aware, raise_signal
from .replay import BaseContext
from .saga import Saga
from .waits import Winner


def message_topic(topic: str | None) -> str:
    """Return the topic name of ``ctx.recv(topic)`` ("" for none)."""
    if topic is None:
        return ""
    return check_name(topic, "message topic")


class Context(BaseContext):
    """``ctx`` of a plain ``def`` workflow."""

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        atomic: bool | None = None,
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once and checkpoint its result under ``name``.

        ``atomic=True`` runs ``fn`` and the checkpoint in one transaction, so its ORM
        writes happen exactly once. Failed attempts are retried by ``retry``. ``timeout``
        (seconds or a timedelta) bounds one attempt: the body runs in a helper thread and
        an attempt that overruns fails with ``StepTimeout`` (the body is not stopped).
        """
        options = steps.options(
            name, fn, retry=retry, atomic=atomic, timeout=timeout, default=self.default_retry
        )
        if inspect.iscoroutinefunction(options.body):
            raise TypeError(f"Step {name!r} is async; only an async workflow can await it.")
        op = self._begin("step", name)
        if op.replayed:
            return self.replay(op)
        attempt = op.attempts + 1
        info = steps.info(self, op, attempt, options)
        began = self.checkpoints.start(op.position, op.kind, op.name, defer=not options.atomic)
        started = time.monotonic()
        try:
            if options.atomic:
                return steps.run_atomic(self, op, options.body, args, kwargs, info)
            try:
                value = steps.run_body(options, args, kwargs, info)
            finally:
                began.settle()
            text = self.encode_result(op, value)
        except Exception as exc:
            # The signal may be ``exc`` itself; chaining it to itself would loop.
            failure = steps.record_failure(self, op, exc, options.policy, attempt, started)
            raise failure  # noqa: B904
        return self.commit_result(op, text, attempt, started)

    def saga(self) -> Saga:
        """Return compensations to run if the run fails for good: ``with ctx.saga() as saga:``."""
        return Saga(self)

    def sleep(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Suspend the run for ``duration`` (seconds or a timedelta), freeing the worker."""
        seconds = to_seconds(duration, "sleep()", negative=True)
        target = self._sleep_target(self._begin("sleep", name), None, seconds)
        signal = self._sleep_signal(target)
        if signal is not None:
            raise signal

    def sleep_until(self, when: datetime, *, name: str = "sleep") -> None:
        """Suspend the run until ``when`` (an aware datetime), freeing the worker."""
        target = self._sleep_target(self._begin("sleep", name), aware(when), 0)
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
            return self.replay(op)
        return self.complete_value(op, make(), 1, time.monotonic())

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
            return channels.received(self.replay(op), model)
        outcome = channels.wait_for_event(self, op, name, optional_seconds(timeout, "timeout="))
        return channels.received(raise_signal(outcome), model)

    def emit_event(self, name: str, data: Any = None, *, source: str = "", type: str = "") -> int:
        """Emit an event, once for this point of the workflow; return its id."""
        op = self._begin("emit", name)
        if op.replayed:
            return int(self.replay(op))
        return channels.emit_event(self, op, name, data, source, type)

    def recv(
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
        outcome = raise_signal(channels.recv(self, op, name, optional_seconds(timeout, "timeout=")))
        return outcome.get("message", default)

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
            return int(self.replay(op))
        return channels.write_stream(self, op, key, value)

    def write_stream_many(self, key: str, values: Iterable[Any]) -> range:
        """Append ``values`` to the stream ``key`` in one commit; return their offsets.

        One operation: the items are written together or not at all, at consecutive
        offsets. No values: nothing is written, and the empty range is still recorded.
        """
        items = channels.stream_items(key, values)
        op = self._begin("stream_many", key)
        if op.replayed:
            return channels.replayed_offsets(self.replay(op))
        return channels.write_stream_many(self, op, key, items)

    def close_stream(self, key: str) -> None:
        """Close the stream ``key``: readers that follow it stop."""
        op = self._begin("close_stream", key)
        if not op.replayed:
            channels.write_stream(self, op, key, None, closes=True)

    def first_of(self, *sources: Any) -> Winner:
        """Wait for whichever comes first: ``durable.event(name)``, ``durable.message(topic)``,
        ``durable.timer(...)``, a child's handle, a callback; return it as a ``Winner``.

        Only the winner is taken: a message that lost stays for a later ``recv``.
        """
        things = waits.check(sources)
        op = self._begin("first_of", waits.operation_name(things))
        if op.replayed:
            return waits.won(self.replay(op), things, op.position)
        outcome = raise_signal(waits.first_of(self, op, things))
        return waits.won(outcome, things, op.position)

    def callback(
        self, *, timeout: float | timedelta | None = None, name: str = "callback"
    ) -> Callback:
        """Make a callback for an outside system to complete (or fail), once.

        Hand its ``id`` or ``url`` out (in a step), then ``cb.wait()`` for the value. After
        ``timeout`` completing it is refused and ``wait()`` raises ``CallbackTimeout``.
        """
        op = self._begin("callback", name)
        if op.replayed:
            return callbacks.made(self.replay(op), self)
        seconds = optional_seconds(timeout, "timeout=")
        return callbacks.made(callbacks.create(self, op, seconds), self)

    def _wait_callback(self, callback: Callback) -> Any:
        op = self._begin("wait_callback", callback.id)
        if op.replayed:
            document = self.replay(op)
        else:
            document = raise_signal(callbacks.wait(self, op, callback))
        return callbacks.outcome(document, callback.id, op.position)

    # --- child runs, cancellation, versions -------------------------------------------

    def start_child(self, workflow: Any, *args: Any, **kwargs: Any) -> ChildHandle:
        """Start a child run of ``workflow`` (a workflow, ``wf.using(...)`` or a name).

        It starts once, with this point of the workflow; ``handle.result()`` waits for it.
        """
        options = children.start_options(workflow)
        op = self._begin("child", options.workflow.name)
        run_id = self.replay(op) if op.replayed else children.start(self, op, options, args, kwargs)
        return ChildHandle(run_id, options.workflow.name, op.position, self)

    def run_child(self, workflow: Any, *args: Any, **kwargs: Any) -> Any:
        """Start a child run and wait for its result."""
        return self.start_child(workflow, *args, **kwargs).result()

    def gather(self, *handles: ChildHandle) -> list[Any]:
        """Wait for every child and return their results in order.

        The first child (in order) found failed or cancelled raises ChildWorkflowFailed.
        """
        op = self._begin("gather", f"{len(handles)} child runs")
        if op.replayed:
            return children.gathered(self.replay(op), list(handles))
        outcome = children.gather(self, op, list(handles))
        return children.gathered(raise_signal(outcome), list(handles))

    def _child_result(self, handle: ChildHandle) -> Any:
        op = self._begin("child_result", handle.run_id)
        if op.replayed:
            document = self.replay(op)
        else:
            document = raise_signal(children.result(self, op, handle))
        children.raise_failed(document, handle)
        return document["result"]

    def _cancel_child(self, handle: ChildHandle, reason: str = "") -> None:
        op = self._begin("cancel_child", handle.run_id)
        if not op.replayed:
            children.cancel(self, op, handle, reason)

    def patched(self, change_id: str) -> bool:
        """Return True where the new code of ``change_id`` runs, False for older runs."""
        answer, op = self._patch(change_id)
        if op is not None:
            self.commit_result(op, "true", 1, time.monotonic())
        return answer
