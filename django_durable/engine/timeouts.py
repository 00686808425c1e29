"""Step timeouts: one attempt of a step's body, bounded by ``timeout=`` seconds.

An ``async def`` body is cancelled at the deadline (``asyncio.timeout``). A plain ``def``
body cannot be: Python has no safe way to stop a thread. It runs in a helper thread, and
the worker stops waiting for it at the deadline. The attempt then fails with
``StepTimeout`` (and is retried like any failure) while the abandoned body may still run
to its end; its result, or its error, is dropped, and its thread closes its database
connections when it ends. Only the waiting thread ever writes the step's checkpoint, so
an abandoned body cannot reach it, and the run's lease is not held for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.db import connections

from ..core.runtime import StepInfo
from ..exceptions import StepTimeout

logger = logging.getLogger("django_durable")


def overrun(step: StepInfo) -> StepTimeout:
    """Return the error of an attempt of ``step`` that ran past its timeout."""
    return StepTimeout(
        f"Attempt {step.attempt} of step {step.name!r} ran past its timeout of "
        f"{step.timeout:g} seconds."
    )


def with_deadline(step: StepInfo, seconds: float) -> StepInfo:
    """Return ``step`` with its timeout, and the deadline of an attempt starting now."""
    return dataclasses.replace(step, timeout=seconds, deadline=time.monotonic() + seconds)


class _Attempt:
    """One attempt of a plain body in a helper thread: its outcome, or its abandonment.

    The waiting thread and the helper decide under one lock which came first, the body's
    end or the deadline, so a result is either handed over or dropped, never both.
    """

    def __init__(self, step: StepInfo) -> None:
        self.step = step
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._abandoned_at: float | None = None
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self, call: Callable[[], Any]) -> None:
        """Call the body here (the helper thread); keep its outcome unless abandoned."""
        value: Any = None
        error: BaseException | None = None
        try:
            value = call()
        except BaseException as exc:  # handed to the waiting thread, which raises it
            error = exc
        finally:
            # This thread's connections are its own: they must not outlive the body.
            connections.close_all()
        with self._lock:
            abandoned_at = self._abandoned_at
            if abandoned_at is None:
                self._value, self._error = value, error
                self.finished.set()
                return
        logger.warning(
            "The abandoned body of step %r (run %s, attempt %s) ended %.1f s after its "
            "timeout; its %s is dropped",
            self.step.name,
            self.step.run_id,
            self.step.attempt,
            time.monotonic() - abandoned_at,
            "error" if error is not None else "result",
        )

    def abandon(self) -> bool:
        """Give up on the body unless it finished; return whether it was abandoned."""
        with self._lock:
            if self.finished.is_set():
                return False
            self._abandoned_at = time.monotonic()
            return True

    def outcome(self) -> Any:
        """Return the body's value, or raise its error."""
        if self._error is not None:
            raise self._error
        return self._value


def call_with_timeout(call: Callable[[StepInfo], Any], step: StepInfo, seconds: float) -> Any:
    """Run ``call(step)`` in a helper thread; return its value, or raise ``StepTimeout``
    once ``seconds`` have passed (the body is abandoned, not stopped)."""
    step = with_deadline(step, seconds)
    attempt = _Attempt(step)
    # The body sees the workflow's context variables (its run, its span) in its thread.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=attempt.run,
        args=(lambda: context.run(call, step),),
        name=f"durable-step-{step.run_id}-{step.position}",
        daemon=True,  # an abandoned body must not keep the process alive
    )
    thread.start()
    if not attempt.finished.wait(seconds) and attempt.abandon():
        logger.warning(
            "Step %r of run %s overran its timeout of %g s (attempt %s); its body is "
            "abandoned in thread %s and may still finish its side effects",
            step.name,
            step.run_id,
            seconds,
            step.attempt,
            thread.name,
        )
        raise overrun(step)
    return attempt.outcome()


async def await_with_timeout(
    call: Callable[[StepInfo], Awaitable[Any]], step: StepInfo, seconds: float
) -> Any:
    """Await ``call(step)``, cancelled at the deadline: then raise ``StepTimeout``.

    A body that blocks the event loop cannot be cancelled until it awaits; if it returns
    after the deadline all the same, its result is dropped like a late thread's.
    """
    step = with_deadline(step, seconds)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        async with asyncio.timeout_at(deadline) as scope:
            value = await call(step)
    except Exception as exc:  # not CancelledError: a cancellation from outside goes on
        if scope.expired():  # TimeoutError, or what the cancelled body raised instead
            raise overrun(step) from exc
        raise
    if scope.expired() or loop.time() >= deadline:
        raise overrun(step)
    return value
