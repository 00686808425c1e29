"""Starting runs and following them from application code.

Writes join the caller's ``transaction.atomic()`` block: a rolled-back request leaves no
run behind, and workers are notified only when the transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Value
from django.db.models.functions import Now
from django.utils import timezone

from . import db, db_tree, serialization
from .conf import get_settings
from .exceptions import (
    DurableError,
    RunNotFound,
    RunNotRetryable,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowNotFound,
)
from .models import Event, Run, RunStatus, WorkerProcess
from .notify import await_until, wait_until
from .registry import StartOptions, get_workflow

# The range of the priority column (a SmallIntegerField); higher runs first.
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767


def _alias() -> str:
    return get_settings().DATABASE


MAX_LIMIT = 1_000_000  # runs list_runs() returns at most
MAX_BATCH = 100_000  # runs prune() deletes in one transaction at most
LONGEST_AGE = 100 * 365 * 86400  # seconds: prune(older_than=) must be under it


def _seconds(value: float | timedelta | None, what: str = "timeout") -> float:
    """Return ``value`` in seconds (0 for None); ``ValueError`` if negative or NaN."""
    if value is None:
        return 0.0
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not seconds >= 0:  # NaN too: a wait for NaN seconds would never end
        raise ValueError(f"{what}= must be 0 or more seconds, or a timedelta, not {value!r}.")
    return seconds


def _db_time(offset: float) -> Any:
    """Return the database's time plus ``offset`` seconds, for an INSERT.

    PostgreSQL computes it (so application clocks may drift); SQLite shares our clock.
    """
    if not db.dialect().pg:
        return timezone.now() + timedelta(seconds=offset)
    if not offset:
        return Now()
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=offset), output_field=DurationField()),
        output_field=DateTimeField(),
    )


def _schedule(options: StartOptions) -> tuple[Any, Any]:
    """Return ``available_at`` and ``deadline_at`` for a new run."""
    timeout = options.workflow.timeout
    delay = options.delay
    if isinstance(delay, datetime):  # StartOptions checked it is aware
        deadline = delay + timedelta(seconds=timeout) if timeout is not None else None
        return delay, deadline
    seconds = _seconds(delay, "delay")
    deadline = _db_time(seconds + timeout) if timeout is not None else None
    return _db_time(seconds), deadline


def start_run(options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]) -> RunHandle:
    """Insert a pending run (or find the one with the same idempotency key)."""
    return create_run(options, args, kwargs)[0]


def create_run(
    options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[RunHandle, bool]:
    """Insert a pending run; return its handle and whether it is new (not found by key)."""
    workflow = options.workflow
    key = options.idempotency_key
    alias = _alias()
    if key is not None:
        existing = Run.objects.using(alias).filter(idempotency_key=key).first()
        if existing is not None:
            return _same_workflow(existing, workflow.name), False
    available_at, deadline_at = _schedule(options)
    run = new_run(options, args, kwargs, available_at=available_at, deadline_at=deadline_at)
    with transaction.atomic(using=alias):
        if key is None:
            run.save(force_insert=True, using=alias)
        else:
            try:
                with transaction.atomic(using=alias):  # a savepoint: the key may race
                    run.save(force_insert=True, using=alias)
            except IntegrityError:
                existing = Run.objects.using(alias).filter(idempotency_key=key).first()
                if existing is None:
                    raise
                return _same_workflow(existing, workflow.name), False
        db.notify([f"q:{run.queue}"], alias=alias)
    # Expressions (the database's now()) were assigned; read the stored values back.
    run.refresh_from_db(using=alias, fields=["available_at", "deadline_at"])
    return RunHandle(run), True


def new_run(
    options: StartOptions,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    *,
    available_at: Any,
    deadline_at: Any,
    **fields: Any,
) -> Run:
    """Return an unsaved pending run of ``options`` (input encoded and checked)."""
    workflow = options.workflow
    if not (isinstance(options.priority, int) and PRIORITY_MIN <= options.priority <= PRIORITY_MAX):
        raise ValueError(
            f"priority= must be a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}, "
            f"not {options.priority!r}."
        )
    document = serialization.to_document(
        {"args": list(args), "kwargs": dict(kwargs)},
        what=f"The input of workflow {workflow.name!r}",
    )
    owner = {} if "owner_id" in fields else {"owner": options.owner}
    return Run(
        workflow_name=workflow.name,
        queue=options.queue or workflow.queue or get_settings().DEFAULT_QUEUE,
        priority=options.priority,
        input=document,
        idempotency_key=options.idempotency_key,
        available_at=available_at,
        deadline_at=deadline_at,
        parent_close=options.parent_close,
        **owner,
        **fields,
    )


def _same_workflow(run: Run, name: str) -> RunHandle:
    if run.workflow_name != name:
        raise DurableError(
            f"Idempotency key {run.idempotency_key!r} already started run {run.id} of "
            f"workflow {run.workflow_name!r}, not {name!r}."
        )
    return RunHandle(run)


async def astart_run(
    options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]
) -> RunHandle:
    """Insert a pending run (async)."""
    return await sync_to_async(start_run)(options, args, kwargs)


def start(
    name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    queue: str | None = None,
    priority: int = 0,
    delay: float | timedelta | datetime | None = None,
    owner: Any = None,
) -> RunHandle:
    """Start a run of the workflow registered as ``name``."""
    options = get_workflow(name).using(
        idempotency_key=idempotency_key, queue=queue, priority=priority, delay=delay, owner=owner
    )
    return start_run(options, args, kwargs or {})


async def astart(
    name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> RunHandle:
    """Start a run of the workflow registered as ``name`` (async)."""
    return await sync_to_async(start)(name, args, kwargs, **options)


def _get(run_id: str | uuid.UUID) -> Run:
    try:
        return Run.objects.using(_alias()).get(pk=_uuid(run_id))
    except Run.DoesNotExist:
        raise RunNotFound.of(run_id) from None


def cancel(run_id: str | uuid.UUID, reason: str = "") -> bool:
    """Cancel a run and every run under it; return False if it had already finished.

    A run that never started ends at once; any other raises ``Cancelled`` at its next
    durable operation (a waiting or sleeping run is woken for that), runs its cleanup
    (``ctx.shield()``) and ends ``cancelled``. A running step is not interrupted.
    """
    run = _uuid(run_id)
    changed = db_tree.cancel_tree(run, reason or "cancelled", alias=_alias())
    if changed is None:
        raise RunNotFound.of(run_id)
    return changed > 0


async def acancel(run_id: str | uuid.UUID, reason: str = "") -> bool:
    """Cancel a run and every run under it (async)."""
    return await sync_to_async(cancel)(run_id, reason)


def retry(run_id: str | uuid.UUID) -> RunHandle:
    """Start a failed or cancelled run again from its checkpoints.

    What completed stays; the run goes back to where it failed (the failing step runs
    again) or was cancelled, with ``attempt`` one higher and its deadline renewed. Its
    child runs that were cancelled with it (when it was cancelled or finished) start
    again from their checkpoints too, so that it finds them running.
    """
    alias = _alias()
    with transaction.atomic(using=alias):
        run = _locked(Run.objects.using(alias).filter(pk=_uuid(run_id))).first()
        if run is None:
            raise RunNotFound.of(run_id)
        if run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            raise RunNotRetryable(
                f"Run {run.pk} is {run.status}: only failed or cancelled runs can be retried."
            )
        ended = [t for t in (run.cancel_requested_at, run.finished_at) if t is not None]
        reopened = [(run.pk, _reopen(run, alias))]
        while ended and reopened:  # parents before children: the lock order everywhere
            parent_id, rewound_to = reopened.pop()
            children = Run.objects.using(alias).filter(
                parent_id=parent_id, status=RunStatus.CANCELLED, cancel_requested_at__gte=min(ended)
            )
            if rewound_to is not None:  # those past it start anew when the parent gets there
                children = children.filter(parent_position__lt=rewound_to)
            reopened += [(child.pk, _reopen(child, alias)) for child in _locked(children)]
    return RunHandle(_get(run.pk))


def _locked(runs: Any) -> Any:
    return runs.select_for_update(of=("self",)).order_by("id")


def _reopen(run: Run, alias: str) -> int | None:
    """Make a failed or cancelled run pending again; return the position it rewound to."""
    if run.status == RunStatus.CANCELLED:
        position = db_tree.cancel_marker_position(run.pk, alias=alias)
    else:
        position = (run.error or {}).get("position")
    if position is not None:
        db_tree.rewind(run.pk, int(position), alias=alias)
    try:
        timeout = get_workflow(run.workflow_name).timeout
    except WorkflowNotFound:
        timeout = None
    Run.objects.using(alias).filter(pk=run.pk).update(
        status=RunStatus.PENDING,
        available_at=_db_time(0),
        deadline_at=None if timeout is None else _db_time(timeout),
        attempt=F("attempt") + 1,
        error=None,
        result=None,
        finished_at=None,
        cancel_requested_at=None,
        cancel_reason="",
        recoveries=0,
        wake_at=None,
        wake_on=None,
        waiting_for="",
        updated_at=timezone.now(),
    )
    db.notify([f"q:{run.queue}"], alias=alias)
    return None if position is None else int(position)


async def aretry(run_id: str | uuid.UUID) -> RunHandle:
    """Start a failed or cancelled run again from its checkpoints (async)."""
    return await sync_to_async(retry)(run_id)


def _uuid(run_id: str | uuid.UUID) -> uuid.UUID:
    try:
        return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        raise RunNotFound.of(run_id) from None


def _finished(run_id: uuid.UUID) -> Run | None:
    run = _get(run_id)
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
            status = db.run_status(self.run_id, alias=_alias())
            if status is None:
                raise RunNotFound.of(self.run_id)
            if status not in RunStatus.terminal():
                return None
        return _finished(self.run_id)


def get_run(run_id: str | uuid.UUID) -> RunHandle:
    """Return the handle of a run, or raise ``RunNotFound``."""
    return RunHandle(_get(run_id))


async def aget_run(run_id: str | uuid.UUID) -> RunHandle:
    """Return the handle of a run, or raise ``RunNotFound`` (async)."""
    return await sync_to_async(get_run)(run_id)


def list_runs(
    workflow: str | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 100,
    **filters: Any,
) -> list[RunHandle]:
    """Return runs newest first, filtered by workflow name, status and model fields."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit= must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}.")
    runs = Run.objects.using(_alias()).all()
    if workflow is not None:
        runs = runs.filter(workflow_name=workflow)
    if isinstance(status, str):
        runs = runs.filter(status=status)
    elif status is not None:
        runs = runs.filter(status__in=list(status))
    if filters:
        runs = runs.filter(**filters)
    return [RunHandle(run) for run in runs.order_by("-created_at", "-id")[:limit]]


async def alist_runs(
    workflow: str | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 100,
    **filters: Any,
) -> list[RunHandle]:
    """Return runs newest first (async)."""
    return await sync_to_async(list_runs)(workflow, status, limit, **filters)


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
        self._run = _get(self._run.id)
        return self

    async def arefresh(self) -> RunHandle:
        """Read the run again and return this handle (async)."""
        return await sync_to_async(self.refresh)()

    def cancel(self, reason: str = "") -> bool:
        """Cancel the run and every run under it (see ``durable.cancel``)."""
        return cancel(self._run.pk, reason)

    async def acancel(self, reason: str = "") -> bool:
        """Cancel the run and every run under it (async)."""
        return await acancel(self._run.pk, reason)

    def retry(self) -> RunHandle:
        """Start the failed or cancelled run again from its checkpoints."""
        self._run = retry(self._run.pk)._run
        return self

    async def aretry(self) -> RunHandle:
        """Start the failed or cancelled run again from its checkpoints (async)."""
        return await sync_to_async(self.retry)()

    @property
    def parent_id(self) -> str | None:
        """Return the id of the run that started this one as a child, if one did."""
        return None if self._run.parent_id is None else str(self._run.parent_id)

    def children(self) -> list[RunHandle]:
        """Return the child runs this run started, oldest first."""
        rows = Run.objects.using(_alias()).filter(parent_id=self._run.pk)
        return [RunHandle(run) for run in rows.order_by("parent_position", "created_at")]

    async def achildren(self) -> list[RunHandle]:
        """Return the child runs this run started (async)."""
        return await sync_to_async(self.children)()

    # Talking to the run: see exchange.py (imported late, it imports this module).

    def send(
        self, message: Any, topic: str | None = None, idempotency_key: str | None = None
    ) -> int:
        """Deliver ``message`` to the run; its ``ctx.recv(topic)`` takes it."""
        from .exchange import send

        return send(self._run.pk, message, topic, idempotency_key)

    async def asend(
        self, message: Any, topic: str | None = None, idempotency_key: str | None = None
    ) -> int:
        """Deliver ``message`` to the run (async)."""
        from .exchange import asend

        return await asend(self._run.pk, message, topic, idempotency_key)

    def get_value(
        self, key: str, timeout: float | timedelta | None = None, default: Any = None
    ) -> Any:
        """Return the newest value the run published under ``key`` (waiting up to ``timeout``)."""
        from .exchange import get_value

        return get_value(self._run.pk, key, timeout, default)

    async def aget_value(
        self, key: str, timeout: float | timedelta | None = None, default: Any = None
    ) -> Any:
        """Return the newest value under ``key`` (async)."""
        from .exchange import aget_value

        return await aget_value(self._run.pk, key, timeout, default)

    def values(self) -> dict[str, Any]:
        """Return the newest value of every key the run published."""
        from .exchange import get_values

        return get_values(self._run.pk)

    async def avalues(self) -> dict[str, Any]:
        """Return the newest value of every key the run published (async)."""
        from .exchange import aget_values

        return await aget_values(self._run.pk)

    def read_stream(
        self, key: str, offset: int = 0, follow: bool = False, *, timeout: float | None = None
    ) -> Iterator[Any]:
        """Yield the values of the run's stream ``key`` from ``offset``."""
        from .exchange import read_stream

        return read_stream(self._run.pk, key, offset, follow, timeout=timeout)

    def aread_stream(
        self, key: str, offset: int = 0, follow: bool = False, *, timeout: float | None = None
    ) -> AsyncIterator[Any]:
        """Yield the values of the run's stream ``key`` from ``offset`` (async)."""
        from .exchange import aread_stream

        return aread_stream(self._run.pk, key, offset, follow, timeout=timeout)

    def wait_finished(self, timeout: float | timedelta | None = None) -> RunHandle:
        """Wait until the run is finished and return this handle; ``TimeoutError`` if not."""
        run_id = self._run.id
        seconds = None if timeout is None else _seconds(timeout)
        try:
            self._run = wait_until(_FinishedCheck(run_id), keys=[f"r:{run_id}"], timeout=seconds)
        except TimeoutError:
            self.refresh()
            raise self._timeout(seconds) from None
        return self

    async def await_finished(self, timeout: float | timedelta | None = None) -> RunHandle:
        """Wait until the run is finished (async; holds no thread while waiting)."""
        run_id = self._run.id
        seconds = None if timeout is None else _seconds(timeout)
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


def _prune_statuses(statuses: str | Iterable[str] | None) -> list[str]:
    terminal = sorted(RunStatus.terminal())
    if statuses is None:
        return list(terminal)
    chosen = sorted({statuses} if isinstance(statuses, str) else set(statuses))
    wrong = [status for status in chosen if status not in terminal]
    if wrong or not chosen:
        raise ValueError(
            f"prune() deletes finished runs only: statuses must be among {', '.join(terminal)}, "
            f"not {', '.join(map(repr, wrong)) or 'nothing'}."
        )
    return chosen


def prune(
    *,
    older_than: timedelta | float,
    statuses: str | Iterable[str] | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
) -> int:
    """Delete finished runs (and their steps) that finished over ``older_than`` ago.

    ``statuses`` picks among the terminal ones (default: all three). Runs go in batches
    of ``batch_size``, oldest first, each batch in its own transaction; rows another
    transaction holds are skipped, so prunes never wait on each other or on workers.
    Records of workers silent, and events emitted, longer than ``older_than`` ago are
    deleted too. With
    ``dry_run=True`` nothing is deleted. Return how many runs were (or would be) deleted.
    """
    seconds = _seconds(older_than, "older_than")
    if seconds >= LONGEST_AGE:
        raise ValueError("older_than= must be under 100 years.")
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size= must be from 1 to {MAX_BATCH}, not {batch_size!r}.")
    alias = _alias()
    finished = Run.objects.using(alias).filter(
        status__in=_prune_statuses(statuses), finished_at__lt=_db_time(-seconds)
    )
    if dry_run:
        return finished.count()
    deleted = 0
    while True:
        with transaction.atomic(using=alias):
            # A fixed order and SKIP LOCKED: concurrent prunes cannot deadlock.
            batch = finished.select_for_update(skip_locked=True).order_by("finished_at", "id")
            ids = list(batch.values_list("id", flat=True)[:batch_size])
            if not ids:
                break
            # The ORM deletes the steps (and any other rows of the runs) first.
            _, counts = Run.objects.using(alias).filter(id__in=ids).delete()
        deleted += counts.get(Run._meta.label, 0)
    # Worker records silent for as long are history too (live workers heartbeat), and so
    # are events emitted that long ago (a run that waits later no longer sees them).
    WorkerProcess.objects.using(alias).filter(last_seen_at__lt=_db_time(-seconds)).delete()
    old_events = Event.objects.using(alias).filter(created_at__lt=_db_time(-seconds))
    while event_ids := list(
        old_events.order_by("created_at", "id").values_list("id", flat=True)[:batch_size]
    ):
        Event.objects.using(alias).filter(id__in=event_ids).delete()
    return deleted


async def aprune(
    *,
    older_than: timedelta | float,
    statuses: str | Iterable[str] | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
) -> int:
    """Delete finished runs that finished over ``older_than`` ago (async)."""
    return await sync_to_async(prune)(
        older_than=older_than, statuses=statuses, batch_size=batch_size, dry_run=dry_run
    )
