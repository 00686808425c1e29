"""Forking a run: a new run of the same workflow and input that begins with the original's
first checkpoints (``durable.fork``), and runs the rest on the code deployed now.

What a fork copies, and what it does not:

- The records at positions ``0 .. from_step - 1``, as they are: replay returns their results
  (or raises their errors), so their side effects do not happen again. Each must have
  finished (completed, or failed for good): a step that was running, retrying or waiting
  has no outcome to copy. A cancelled run's cancellation point is not copied either.
- The values and stream items those operations wrote: the fork's progress reads as the
  original's did at that step.
- A child run started below ``from_step`` stays the original's: the fork's copy of that
  record names it, and the fork reads its recorded outcome when it asks for it (so the
  child must have finished). A fork never adopts, cancels or waits on a running child.
- Messages stay with the original: those it took are in the copied ``recv`` records and
  are not taken again; a ``recv`` the fork runs again waits for a message sent to the fork.
- Events the copied operations emitted are not emitted again; those the re-run part emits
  are the fork's own.

The fork is a new top-level run: same workflow, input, queue, priority and owner, attempt
1, its deadline counted from now, no idempotency key unless one is given, and
``forked_from`` set to the original.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from django.db import IntegrityError, transaction

from ..core import clock, serialization, telemetry
from ..core.statuses import RunStatus, StepStatus
from ..declarations.registry import get_workflow
from ..exceptions import DurableError, RunNotForkable, RunNotFound
from ..models import Run, Step
from ..store.dialect import notify
from ..store.forks import copy_records
from .lookup import db_alias, run_ref, text_option

# What a fork may copy: operations that ended.
_FINISHED = (StepStatus.COMPLETED, StepStatus.FAILED)


@dataclasses.dataclass(frozen=True, slots=True)
class ForkLimit:
    """How far a run can be forked: ``from_step`` from 0 to ``limit``, and why not further."""

    limit: int
    reason: str


def fork_run(
    run_id: str | uuid.UUID | None = None,
    *,
    from_step: int,
    key: str | None = None,
    idempotency_key: str | None = None,
) -> Run:
    """Insert the fork of a finished run (see ``durable.fork``); return its row.

    The same ``idempotency_key`` returns the fork it made before.
    """
    step = _check_step(from_step)
    if idempotency_key is not None:
        text_option(idempotency_key, "idempotency_key=")
    original_id = run_ref(run_id, key)
    alias = db_alias()
    if idempotency_key is not None:
        existing = Run.objects.using(alias).filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_origin(existing, original_id)
    with transaction.atomic(using=alias):
        # Locked: a retry of the original (which rewinds its records) or a prune waits.
        locked = Run.objects.using(alias).select_for_update(of=("self",))
        original = locked.filter(pk=original_id).first()
        if original is None:
            raise RunNotFound.of(original_id)
        _check_finished(original)
        timeout = get_workflow(original.workflow_name).timeout  # WorkflowNotFound if gone
        found = fork_limit(original)
        if step > found.limit:
            raise RunNotForkable(
                f"Run {original.pk} cannot be forked from step {step}: {found.reason}. "
                f"Fork it from a step from 0 to {found.limit}."
            )
        run = _new_fork(original, timeout, idempotency_key)
        try:
            with transaction.atomic(using=alias):  # a savepoint: the key may race
                run.save(force_insert=True, using=alias)
        except IntegrityError:
            existing = Run.objects.using(alias).filter(idempotency_key=idempotency_key).first()
            if idempotency_key is None or existing is None:
                raise
            return _same_origin(existing, original_id)
        copy_records(original.pk, run.pk, step, alias=alias)
        notify([f"q:{run.queue}"], alias=alias)
    # Expressions (the database's now()) were assigned; read the stored values back.
    run.refresh_from_db(using=alias, fields=["available_at", "deadline_at"])
    return run


def _check_step(from_step: Any) -> int:
    if isinstance(from_step, bool) or not isinstance(from_step, int) or from_step < 0:
        raise ValueError(
            "from_step= must be a whole number from 0: the position of the first operation "
            f"the fork runs again (the number of checkpoints it copies), not {from_step!r}."
        )
    return from_step


def _check_finished(run: Run) -> None:
    if not run.is_terminal:
        raise RunNotForkable(
            f"Run {run.pk} is {run.status}: only a completed, failed or cancelled run can be "
            "forked (the records of a run in flight may still change). Wait for it to end, "
            "or cancel it first.",
            reason="unfinished",
        )


def _same_origin(run: Run, original_id: uuid.UUID) -> Run:
    if run.forked_from_id != original_id:
        raise DurableError(
            f"Idempotency key {run.idempotency_key!r} already started run {run.pk}, which is "
            f"not a fork of run {original_id}."
        )
    return run


def _new_fork(original: Run, timeout: float | None, idempotency_key: str | None) -> Run:
    """Return the unsaved fork of ``original``: pending now, a new top-level run."""
    run = Run(
        workflow_name=original.workflow_name,
        queue=original.queue,
        priority=original.priority,
        input=original.input,
        idempotency_key=idempotency_key,
        owner_id=original.owner_id,
        forked_from=original,
        # Under the same flow control as the original (a fork is no start: a singleton's
        # fork is not returned the original, it waits for its slot).
        flow_key=original.flow_key,
        flow_limit=original.flow_limit,
        available_at=clock.database_time(0),
        deadline_at=None if timeout is None else clock.database_time(timeout),
    )
    run.trace_context = telemetry.started(
        run_id=str(run.pk), workflow_name=run.workflow_name, queue=run.queue
    )
    return run


def fork_limit(run: Run) -> ForkLimit:
    """Return the largest ``from_step`` a fork of ``run`` may take, and what stops it there.

    Records are copied from position 0 up, while each has finished, is not where the run
    was cancelled, and did not start a child run that is still going.
    """
    records = Step.objects.using(db_alias()).filter(run_id=run.pk).order_by("position")
    children: list[int] = []
    end = 0  # the position after the last record that can be copied
    for position, kind, name, status in records.values_list("position", "kind", "name", "status"):
        if position != end:  # never written: positions are dense
            break
        if kind == "cancel":
            reason = f"it was cancelled at position {position}, which a fork does not copy"
            return _children_limit(run, children, ForkLimit(position, reason))
        if status not in _FINISHED:
            reason = (
                f"its {kind} {name!r} at position {position} is {status}, not finished: a "
                "fork copies only operations that ended"
            )
            return _children_limit(run, children, ForkLimit(position, reason))
        if kind == "child":
            children.append(position)
        end = position + 1
    return _children_limit(run, children, ForkLimit(end, _recorded(run, end)))


def _recorded(run: Run, count: int) -> str:
    return f"run {run.pk} recorded {count} operation{'' if count == 1 else 's'}"


def _children_limit(run: Run, positions: list[int], found: ForkLimit) -> ForkLimit:
    """Lower ``found`` to the first child run started before it that has not finished."""
    if not positions:
        return found
    alias = db_alias()
    started = dict(
        Step.objects.using(alias)
        .filter(run_id=run.pk, position__in=positions)
        .values_list("position", "result")
    )
    child_ids = {position: _child_id(result) for position, result in started.items()}
    statuses = dict(
        Run.objects.using(alias)
        .filter(pk__in=[child for child in child_ids.values() if child is not None])
        .values_list("pk", "status")
    )
    for position in sorted(child_ids):
        child = child_ids[position]
        status = statuses.get(child) if child is not None else None
        # A child that was pruned is no one's to adopt: its outcome reads as gone.
        if status is not None and status not in RunStatus.terminal():
            reason = (
                f"the child run {child} it started at position {position} has not finished "
                f"({status}): a fork reads a child's outcome, and never shares a running child"
            )
            return ForkLimit(position, reason)
    return found


def _child_id(result: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(serialization.from_document(result)))
    except (ValueError, TypeError, DurableError):
        return None
