"""Operating runs from application code: cancel, start again from checkpoints, prune."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.signals import post_delete, pre_delete
from django.utils import timezone

from ..core import clock, hour_counts, serialization
from ..core.durations import CENTURY, to_seconds
from ..core.statuses import RunStatus, StepStatus
from ..declarations.registry import get_workflow
from ..exceptions import NothingToWake, RunNotFound, RunNotRetryable, WorkflowNotFound
from ..models import Event, Run, RunToken, Step, TriggerDelivery, WorkerProcess
from ..store import pruning, trees
from ..store.dialect import dialect, notify
from .lookup import as_uuid, db_alias, get_row, run_ref

MAX_BATCH = 100_000  # runs prune() deletes in one transaction at most
MAX_PAUSE = 60.0  # seconds prune() may wait between batches (under)
# With pause=None (the default) prune() waits after each batch this many times as long as
# the batch took: it holds the database a third of the time, whatever the machine. On two
# cores shared with a worker, no pause cost the worker half its runs (docs/performance.md).
PACE = 2.0


def cancel(
    run_id: str | uuid.UUID | None = None, reason: str = "", *, key: str | None = None
) -> bool:
    """Cancel a run and every run under it; return False if it had already finished.

    A run that never started ends at once; any other raises ``Cancelled`` at its next
    durable operation (a waiting or sleeping run is woken for that), runs its cleanup
    (``ctx.shield()``) and ends ``cancelled``. A running step is not interrupted.
    ``key=`` names the run by its idempotency key instead of its id.
    """
    run = run_ref(run_id, key)
    changed = trees.cancel_tree(run, reason or "cancelled", alias=db_alias())
    if changed is None:
        raise RunNotFound.of(run if run_id is None else run_id)
    return changed > 0


async def acancel(
    run_id: str | uuid.UUID | None = None, reason: str = "", *, key: str | None = None
) -> bool:
    """Cancel a run and every run under it (async)."""
    return await sync_to_async(cancel)(run_id, reason, key=key)


def reopen(run_id: str | uuid.UUID) -> Run:
    """Start a failed or cancelled run again from its checkpoints.

    What completed stays; the run goes back to where it failed (the failing step runs
    again) or was cancelled, with ``attempt`` one higher and its deadline renewed. Its
    child runs that were cancelled with it (when it was cancelled or finished) start
    again from their checkpoints too, so that it finds them running.
    """
    alias = db_alias()
    with transaction.atomic(using=alias):
        run = _locked(Run.objects.using(alias).filter(pk=as_uuid(run_id))).first()
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
        hour_counts.changed(alias)  # the dashboard counted them as ended in a past hour
    return get_row(run.pk)


def _locked(runs: Any) -> Any:
    return runs.select_for_update(of=("self",)).order_by("id")


def _reopen(run: Run, alias: str) -> int | None:
    """Make a failed or cancelled run pending again; return the position it rewound to."""
    if run.status == RunStatus.CANCELLED:
        position = trees.cancel_marker_position(run.pk, alias=alias)
    else:
        position = (run.error or {}).get("position")
    if position is not None:
        trees.rewind(run.pk, int(position), alias=alias)
    try:
        timeout = get_workflow(run.workflow_name).timeout
    except WorkflowNotFound:
        timeout = None
    Run.objects.using(alias).filter(pk=run.pk).update(
        status=RunStatus.PENDING,
        available_at=clock.database_time(0),
        deadline_at=None if timeout is None else clock.database_time(timeout),
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
    notify([f"q:{run.queue}"], alias=alias)
    return None if position is None else int(position)


def wake_now(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> str:
    """Wake a waiting run now, as if the time it waits for had come; return what was cut short.

    ``"sleep"``: its ``ctx.sleep()`` ends now. ``"timeout"``: the timeout of its wait for an
    event, a message or a child comes now (the wait times out unless what it waits for
    arrived). ``"retry"``: a failed step's backoff ends now. Raises ``NothingToWake`` for a
    run that is not waiting, or that waits with no time limit; ``RunNotFound``. ``key=``
    names the run by its idempotency key instead of its id.
    """
    alias = db_alias()
    run_id = run_ref(run_id, key)
    with transaction.atomic(using=alias):
        run = _locked(Run.objects.using(alias).filter(pk=run_id)).first()
        if run is None:
            raise RunNotFound.of(run_id)
        if run.status != RunStatus.WAITING:
            raise NothingToWake(f"Run {run.pk} is {run.status}, not waiting: nothing to wake.")
        last = Step.objects.using(alias).filter(run=run).order_by("-position").first()
        cut = _cut_short(run, last)
        Run.objects.using(alias).filter(pk=run.pk).update(
            status=RunStatus.PENDING,
            available_at=clock.database_time(0),
            wake_at=None,
            wake_on=None,
            waiting_for="",
            updated_at=timezone.now(),
        )
        notify([f"q:{run.queue}"], alias=alias)
    return cut


async def awake_now(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> str:
    """Wake a waiting run now (async)."""
    return await sync_to_async(wake_now)(run_id, key=key)


def _cut_short(run: Run, last: Step | None) -> str:
    """Make the run's last record end now; return what it was (see ``wake_now``)."""
    now = timezone.now() - timedelta(seconds=1)  # past on any clock the worker reads
    if last is not None and last.kind == "sleep" and last.status == StepStatus.COMPLETED:
        last.result = serialization.to_document(now, what="A sleep's end")
        last.save(update_fields=["result"])
        return "sleep"
    if last is not None and last.status == StepStatus.RETRYING:
        return "retry"  # the backoff is only the run's wake time
    marker = last.get_result() if last is not None and last.status == StepStatus.WAITING else None
    if last is None or not isinstance(marker, dict) or marker.get("deadline") is None:
        waits = run.waiting_for or "something"
        raise NothingToWake(
            f"Run {run.pk} waits for {waits} with no time limit: send it what it waits for."
        )
    last.result = serialization.to_document({**marker, "deadline": now}, what="A wait")
    last.save(update_fields=["result"])
    return "timeout"


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


class PruneResult(int):
    """What ``prune`` deleted (or, with ``dry_run``, would delete), and what it kept.

    It is the number of runs, an ``int`` as ``prune`` returned before it said more:
    ``prune(...) == 3`` still works. ``events`` counts the events emitted longer ago than
    ``older_than`` that went; ``events_kept`` those as old kept, because a workflow they
    trigger has not started their batch yet.
    """

    events: int
    events_kept: int

    def __new__(cls, *, runs: int, events: int, events_kept: int) -> PruneResult:
        result = super().__new__(cls, runs)
        result.events = events
        result.events_kept = events_kept
        return result

    @property
    def runs(self) -> int:
        """Finished runs, with their steps, messages, values and stream items."""
        return int(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PruneResult):
            return (self.runs, self.events, self.events_kept) == (
                other.runs,
                other.events,
                other.events_kept,
            )
        return int(self) == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return (
            f"PruneResult(runs={self.runs}, events={self.events}, events_kept={self.events_kept})"
        )


def prune(
    *,
    older_than: timedelta | float,
    statuses: str | Iterable[str] | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    pause: float | timedelta | None = None,
) -> PruneResult:
    """Delete finished runs (and their steps) that had finished over ``older_than`` ago
    when the prune began (by the database's clock).

    ``statuses`` picks among the terminal ones (default: all three). Runs go in batches
    of ``batch_size``, oldest first, each batch in its own transaction; rows another
    transaction holds are skipped, so prunes never wait on each other or on workers.
    Records of workers silent, events emitted, and access tokens that ended (expired or
    revoked) longer than ``older_than`` ago are deleted too, except events that a
    triggered workflow has not received yet. With ``dry_run=True`` nothing is deleted.
    After each batch it waits ``pause`` seconds (under a minute), or by default twice as
    long as the batch took: a long prune leaves most of the database to the workers, at
    the price of lasting three times as long. ``pause=0`` deletes as fast as it can.
    Return how many runs and events were (or would be) deleted, and how many events kept.
    """
    seconds = to_seconds(older_than, "older_than=", limit=CENTURY)
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size= must be from 1 to {MAX_BATCH}, not {batch_size!r}.")
    pace = _Pace(None if pause is None else to_seconds(pause, "pause=", limit=MAX_PAUSE))
    alias = db_alias()
    # Read once: each batch's own now() would move the cutoff on while a long prune goes.
    cutoff = clock.database_now(alias) - timedelta(seconds=seconds)
    finished = Run.objects.using(alias).filter(
        status__in=_prune_statuses(statuses), finished_at__lt=cutoff
    )
    old_events = Event.objects.using(alias).filter(created_at__lt=cutoff)
    # An event whose trigger delivery is pending is owed to a batch that has not started:
    # deleting it would delete the delivery with it, and the batch would never run.
    owed = Exists(TriggerDelivery.objects.using(alias).filter(event=OuterRef("pk")))
    if dry_run:
        return PruneResult(
            runs=finished.count(),
            events=old_events.exclude(owed).count(),
            events_kept=old_events.filter(owed).count(),
        )
    deleted = _delete_runs(finished, batch_size, alias, pace)
    # Worker records silent for as long are history too (live workers heartbeat), and so
    # are events emitted that long ago (a run that waits later no longer sees them).
    WorkerProcess.objects.using(alias).filter(last_seen_at__lt=cutoff).delete()
    events = 0
    while event_ids := list(
        old_events.exclude(owed)
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:batch_size]
    ):
        # A delivery is written with its event, never later: these ids stay deletable.
        _, counts = Event.objects.using(alias).filter(id__in=event_ids).delete()
        events += counts.get(Event._meta.label, 0)
        pace.rest()
    # Access tokens that ended (expired or revoked) that long ago only take room: every page
    # view of a run may make one.
    RunToken.objects.using(alias).filter(
        Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff)
    ).delete()
    return PruneResult(runs=deleted, events=events, events_kept=old_events.filter(owed).count())


class _Pace:
    """The wait between two batches of a prune: ``seconds``, or (``None``) ``PACE`` times
    as long as the batch took."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self._began = clock()

    def rest(self) -> None:
        """Wait after the batch that began at the last rest (or at the start)."""
        wait = self.seconds
        if wait is None:
            wait = min(PACE * (self._clock() - self._began), MAX_PAUSE)
        if wait > 0:
            time.sleep(wait)
        self._began = self._clock()


def _delete_runs(finished: QuerySet[Run], batch_size: int, alias: str, pace: _Pace) -> int:
    """Delete the ``finished`` runs in batches, oldest first; return how many.

    Each batch is a transaction of its own: locks are held for one batch only, and the
    workers' writes wait for none of them (the runs are finished; rows naming them are
    only set to NULL).
    """
    d = dialect(alias)
    deleted = 0
    while True:
        with transaction.atomic(using=alias):
            # A fixed order and SKIP LOCKED: concurrent prunes cannot deadlock.
            batch = finished.select_for_update(skip_locked=True).order_by("finished_at", "id")
            ids = list(batch.values_list("id", flat=True)[:batch_size])
            if not ids:
                if deleted:
                    hour_counts.changed(alias)  # the admin dashboard's counts of past hours
                return deleted
            if _observed():
                # Someone listens to deletions: Django's deletion, which sends the signals.
                _, counts = Run.objects.using(alias).filter(id__in=ids).delete()
                deleted += counts.get(Run._meta.label, 0)
            else:
                deleted += pruning.delete_runs(d, ids)
        pace.rest()  # after the batch's commit: its locks are gone


def _observed() -> bool:
    """Return whether a receiver of pre_delete or post_delete listens to a pruned model."""
    models = [Run, *(relation.related_model for relation in Run._meta.related_objects)]
    return any(
        signal.has_listeners(model) for model in models for signal in (pre_delete, post_delete)
    )


async def aprune(
    *,
    older_than: timedelta | float,
    statuses: str | Iterable[str] | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    pause: float | timedelta | None = None,
) -> PruneResult:
    """Delete finished runs that finished over ``older_than`` ago (async)."""
    return await sync_to_async(prune)(
        older_than=older_than,
        statuses=statuses,
        batch_size=batch_size,
        dry_run=dry_run,
        pause=pause,
    )
