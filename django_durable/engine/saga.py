"""Compensation (the saga pattern): undo what succeeded when the run fails for good.

``with ctx.saga() as saga:`` records a compensating step each time ``saga.step(...,
compensate=undo)`` succeeds (or ``saga.add(...)`` is called). When an exception leaves the
block and the run will not be retried (its failure is final, or it was cancelled), the
recorded compensations run as ordinary checkpointed steps, newest first, inside
``ctx.shield()`` so that a cancellation does not interrupt them. A crash in the middle is
resumed like any run: the compensations that finished replay from their checkpoints, the
rest run. Then the exception goes on, and the run fails (or is cancelled) with it.

A compensation that fails for good (after its retries) does not stop the others; its error
is added to the run's error as a note, and its failed step shows in the admin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..core.retry import RetryPolicy
from ..declarations.registry import get_workflow
from ..exceptions import Cancelled

if TYPE_CHECKING:
    from .async_context import AsyncContext
    from .context import Context
    from .replay import BaseContext

PREFIX = "compensate:"


@dataclasses.dataclass(frozen=True, slots=True)
class Compensation:
    """A step to run if the run fails: ``fn(*args, **kwargs)`` checkpointed as ``name``."""

    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    retry: RetryPolicy | None


def fails_for_good(ctx: BaseContext, exc: BaseException | None) -> bool:
    """Return whether ``exc``, leaving the workflow now, ends the run without a retry.

    ``Cancelled`` does; the engine's own signals (suspend, lease lost, stopping) do not, nor
    an error the run cannot recover from in this execution (a changed workflow, a passed
    deadline with ``on_timeout="fail"``): no durable operation can run after those. An
    ordinary exception does when the workflow's retry policy does not retry it.
    """
    if exc is None or ctx.fatal is not None:
        return False
    if isinstance(exc, Cancelled):
        return True
    if not isinstance(exc, Exception):
        return False
    return ctx.workflow_retry_at(get_workflow(ctx.workflow_name).retry, exc) is None


class _Recorder:
    """What the sync and async sagas share: the list of compensations, newest last."""

    def __init__(self) -> None:
        self._pending: list[Compensation] = []

    @property
    def pending(self) -> list[str]:
        """Return the names of the recorded compensations, in the order they would run."""
        return [c.name for c in reversed(self._pending)]

    def add(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        """Record ``fn(*args, **kwargs)`` to run as step ``compensate:NAME`` if the run fails."""
        if not callable(fn):
            raise TypeError(f"The compensation {name!r} must be callable, not {type(fn).__name__}.")
        self._pending.append(Compensation(PREFIX + name, fn, args, kwargs, retry))

    def _take(self) -> list[Compensation]:
        taken, self._pending = list(reversed(self._pending)), []
        return taken


def _note(exc: BaseException, compensation: Compensation, error: Exception) -> None:
    exc.add_note(
        f"Compensation step {compensation.name!r} failed too: {type(error).__name__}: {error}"
    )


class Saga(_Recorder):
    """The compensations of a plain ``def`` workflow (``with ctx.saga() as saga:``)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self._ctx = ctx

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        compensate: Callable[[Any], Any] | None = None,
        retry: RetryPolicy | None = None,
        atomic: bool | None = None,
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``ctx.step(name, fn, ...)``; once it succeeds, record ``compensate(result)``."""
        result = self._ctx.step(
            name, fn, *args, retry=retry, atomic=atomic, timeout=timeout, **kwargs
        )
        if compensate is not None:
            self.add(name, compensate, result)
        return result

    def compensate(self, exc: BaseException | None = None) -> None:
        """Run the recorded compensations now, newest first, each once, as steps.

        A failed compensation is added to ``exc`` as a note when given, else raised after
        the others ran.
        """
        first: Exception | None = None
        with self._ctx.shield():
            for compensation in self._take():
                try:
                    self._ctx.step(
                        compensation.name,
                        compensation.fn,
                        *compensation.args,
                        retry=compensation.retry,
                        **compensation.kwargs,
                    )
                except Exception as error:
                    if exc is not None:
                        _note(exc, compensation, error)
                    first = first or error
        if first is not None and exc is None:
            raise first

    def __enter__(self) -> Saga:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and fails_for_good(self._ctx, exc):
            self._ctx.compensated = True
            self.compensate(exc)
        # None: the exception goes on


class AsyncSaga(_Recorder):
    """The compensations of an ``async def`` workflow (``async with ctx.saga() as saga:``)."""

    def __init__(self, ctx: AsyncContext) -> None:
        super().__init__()
        self._ctx = ctx

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        compensate: Callable[[Any], Any] | None = None,
        retry: RetryPolicy | None = None,
        atomic: bool | None = None,
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> Any:
        """Await ``ctx.step(name, fn, ...)``; once it succeeds, record ``compensate(result)``."""
        result = await self._ctx.step(
            name, fn, *args, retry=retry, atomic=atomic, timeout=timeout, **kwargs
        )
        if compensate is not None:
            self.add(name, compensate, result)
        return result

    async def compensate(self, exc: BaseException | None = None) -> None:
        """Run the recorded compensations now, newest first (see ``Saga.compensate``)."""
        first: Exception | None = None
        with self._ctx.shield():
            for compensation in self._take():
                try:
                    await self._ctx.step(
                        compensation.name,
                        compensation.fn,
                        *compensation.args,
                        retry=compensation.retry,
                        **compensation.kwargs,
                    )
                except Exception as error:
                    if exc is not None:
                        _note(exc, compensation, error)
                    first = first or error
        if first is not None and exc is None:
            raise first

    async def __aenter__(self) -> AsyncSaga:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and fails_for_good(self._ctx, exc):
            self._ctx.compensated = True
            await self.compensate(exc)
