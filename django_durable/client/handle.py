"""``RunHandle``: a run as application code sees it, and everything it can ask of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async

from ..core.durations import optional_seconds
from ..core.statuses import RunStatus
from ..exceptions import RunNotFound, WorkflowCancelled, WorkflowFailed
from ..models import Run
from ..store import claims
from ..store.notify import await_until, wait_until
from . import forking, messaging, operating, streams, tokens, values
from .lookup import db_alias, get_row


def _finished(run_id: uuid.UUID) -> Run | None:
    run = get_row(run_id)
    return run if run.is_terminal else None


class _FinishedCheck:
    """What ``wait_finished`` asks each time it looks: the run if finished, else ``None``.

    A wait mostly begins before the run ends, so the first look reads the status alone
    (a raw one-column read, not a model); the looks after it follow a notification that
    the run finished, or a poll, and read the whole row.
    """

    def __init__(self, run_id: uuid.UUID) -> None:
        self.run_id = run_id
        self.first = True

    def __call__(self) -> Run | None:
        if self.first:
            self.first = False
            status = claims.run_status(self.run_id, alias=db_alias())
            if status is None:
                raise RunNotFound.of(self.run_id)
            if status not in RunStatus.terminal():
                return None
        return _finished(self.run_id)


class RunHandle:
    """A run as last read from the database; ``refresh()`` reads it again."""

    __slots__ = ("_run",)

    def __init__(self, run: Run) -> None:
        self._run = run

    def __repr__(self) -> str:
        return f"<RunHandle {self.id} {self.workflow_name!r} {self.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def id(self) -> str:
        """Return the run's id."""
        return str(self._run.id)

    @property
    def status(self) -> RunStatus:
        """Return the status when last read."""
        return RunStatus(self._run.status)

    @property
    def workflow_name(self) -> str:
        """Return the workflow's registered name."""
        return self._run.workflow_name

    @property
    def is_finished(self) -> bool:
        """Return whether the run was in a terminal state when last read."""
        return self._run.is_terminal

    @property
    def error(self) -> dict[str, Any] | None:
        """Return the error document of a failed run (or the last retried error)."""
        return self._run.error

    @property
    def model(self) -> Run:
        """Return the ``Run`` row as last read."""
        return self._run

    def refresh(self) -> RunHandle:
        """Read the run again and return this handle."""
        self._run = get_row(self._run.id)
        return self

    async def arefresh(self) -> RunHandle:
        """Read the run again and return this handle (async)."""
        return await sync_to_async(self.refresh)()

    def cancel(self, reason: str = "") -> bool:
        """Cancel the run and every run under it (see ``durable.cancel``)."""
        return operating.cancel(self._run.pk, reason)

    async def acancel(self, reason: str = "") -> bool:
        """Cancel the run and every run under it (async)."""
        return await operating.acancel(self._run.pk, reason)

    def retry(self) -> RunHandle:
        """Start the failed or cancelled run again from its checkpoints."""
        self._run = operating.reopen(self._run.pk)
        return self

    async def aretry(self) -> RunHandle:
        """Start the failed or cancelled run again from its checkpoints (async)."""
        return await sync_to_async(self.retry)()

    def fork(self, from_step: int, *, idempotency_key: str | None = None) -> RunHandle:
        """Start a new run from this finished run's first ``from_step`` checkpoints
        (see ``durable.fork``); return the new run's handle."""
        return RunHandle(
            forking.fork_run(self._run.pk, from_step=from_step, idempotency_key=idempotency_key)
        )

    async def afork(self, from_step: int, *, idempotency_key: str | None = None) -> RunHandle:
        """Start a new run from this finished run's first checkpoints (async)."""
        return await sync_to_async(self.fork)(from_step, idempotency_key=idempotency_key)

    @property
    def forked_from_id(self) -> str | None:
        """Return the id of the run this one was forked from, if it is a fork."""
        return None if self._run.forked_from_id is None else str(self._run.forked_from_id)

    @property
    def parent_id(self) -> str | None:
        """Return the id of the run that started this one as a child, if one did."""
        return None if self._run.parent_id is None else str(self._run.parent_id)

    def children(self) -> list[RunHandle]:
        """Return the child runs this run started, oldest first."""
        rows = Run.objects.using(db_alias()).filter(parent_id=self._run.pk)
        return [RunHandle(run) for run in rows.order_by("parent_position", "created_at")]

    async def achildren(self) -> list[RunHandle]:
        """Return the child runs this run started (async)."""
        return await sync_to_async(self.children)()

    def create_token(
        self,
        abilities: Iterable[str] = ("read", "stream", "send"),
        expires_in: timedelta | float = timedelta(hours=1),
        *,
        include_children: bool = False,
    ) -> str:
        """Return a new access token to this run, for a frontend without a Django login.

        ``abilities``: "read" (the run and its values), "stream" (its streams), "send"
        (messages to it). It expires after ``expires_in`` (at most 30 days); with
        ``include_children`` it reaches the runs this one started too.
        """
        return tokens.create_token(
            self._run.pk, abilities, expires_in, include_children=include_children
        )

    async def acreate_token(
        self,
        abilities: Iterable[str] = ("read", "stream", "send"),
        expires_in: timedelta | float = timedelta(hours=1),
        *,
        include_children: bool = False,
    ) -> str:
        """Return a new access token to this run (async)."""
        return await tokens.acreate_token(
            self._run.pk, abilities, expires_in, include_children=include_children
        )

    # Talking to the run.

    def send(
        self, message: Any, topic: str | None = None, idempotency_key: str | None = None
    ) -> int:
        """Deliver ``message`` to the run; its ``ctx.recv(topic)`` takes it."""
        return messaging.send(self._run.pk, message, topic, idempotency_key)

    async def asend(
        self, message: Any, topic: str | None = None, idempotency_key: str | None = None
    ) -> int:
        """Deliver ``message`` to the run (async)."""
        return await messaging.asend(self._run.pk, message, topic, idempotency_key)

    def get_value(
        self, key: str, timeout: float | timedelta | None = None, default: Any = None
    ) -> Any:
        """Return the newest value the run published under ``key`` (waiting up to ``timeout``)."""
        return values.get_value(self._run.pk, key, timeout, default)

    async def aget_value(
        self, key: str, timeout: float | timedelta | None = None, default: Any = None
    ) -> Any:
        """Return the newest value under ``key`` (async)."""
        return await values.aget_value(self._run.pk, key, timeout, default)

    def values(self) -> dict[str, Any]:
        """Return the newest value of every key the run published."""
        return values.get_values(self._run.pk)

    async def avalues(self) -> dict[str, Any]:
        """Return the newest value of every key the run published (async)."""
        return await values.aget_values(self._run.pk)

    def read_stream(
        self, key: str, offset: int = 0, follow: bool = False, *, timeout: float | None = None
    ) -> Iterator[Any]:
        """Yield the values of the run's stream ``key`` from ``offset``."""
        return streams.read_stream(self._run.pk, key, offset, follow, timeout=timeout)

    def aread_stream(
        self, key: str, offset: int = 0, follow: bool = False, *, timeout: float | None = None
    ) -> AsyncIterator[Any]:
        """Yield the values of the run's stream ``key`` from ``offset`` (async)."""
        return streams.aread_stream(self._run.pk, key, offset, follow, timeout=timeout)

    def wait_finished(self, timeout: float | timedelta | None = None) -> RunHandle:
        """Wait until the run is finished and return this handle; ``TimeoutError`` if not."""
        run_id = self._run.id
        seconds = optional_seconds(timeout, "timeout=")
        try:
            self._run = wait_until(_FinishedCheck(run_id), keys=[f"r:{run_id}"], timeout=seconds)
        except TimeoutError:
            self.refresh()
            raise self._timeout(seconds) from None
        return self

    async def await_finished(self, timeout: float | timedelta | None = None) -> RunHandle:
        """Wait until the run is finished (async; holds no thread while waiting)."""
        run_id = self._run.id
        seconds = optional_seconds(timeout, "timeout=")
        try:
            self._run = await await_until(
                sync_to_async(_FinishedCheck(run_id)), keys=[f"r:{run_id}"], timeout=seconds
            )
        except TimeoutError:
            await self.arefresh()
            raise self._timeout(seconds) from None
        return self

    def _timeout(self, seconds: float | None) -> TimeoutError:
        return TimeoutError(
            f"Run {self.id} did not finish within {seconds} seconds (status: {self._run.status})."
        )

    def result(self, timeout: float | timedelta | None = None) -> Any:
        """Wait for the run to finish and return its result.

        Raises ``WorkflowFailed`` (with the original error) if the run failed or was
        cancelled, and ``TimeoutError`` if it is still going after ``timeout``.
        """
        return self._outcome(self.wait_finished(timeout)._run)

    async def aresult(self, timeout: float | timedelta | None = None) -> Any:
        """Wait for the run to finish and return its result (async)."""
        return self._outcome((await self.await_finished(timeout))._run)

    @staticmethod
    def _outcome(run: Run) -> Any:
        if run.status == RunStatus.COMPLETED:
            return run.get_result()
        error = run.error or {}
        cancelled = run.status == RunStatus.CANCELLED
        verb = "was cancelled" if cancelled else "failed"
        raise (WorkflowCancelled if cancelled else WorkflowFailed)(
            f"Run {run.id} of {run.workflow_name!r} {verb}: "
            f"{error.get('type', 'Error')}: {error.get('message', '')}",
            run_id=str(run.id),
            error=error,
        )
