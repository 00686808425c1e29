"""Child runs inside a workflow: start them, wait for them (one or many), cancel them.

Like ``channels``, each function runs one positioned operation that is not recorded yet
and returns its value or a signal for the face to raise. Starting a child inserts its
run and the parent's checkpoint in one transaction: a parent that lost its lease starts
no child. Waiting suspends the parent (its worker is free) until the child finishes;
the child wakes it (see ``store.trees``).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction

from ..core import telemetry
from ..core.conf import get_settings
from ..core.statuses import RunStatus
from ..declarations.registry import get_workflow
from ..declarations.workflows import StartOptions, Workflow
from ..exceptions import ChildWorkflowFailed, DurableError
from ..models import Run
from ..store import trees
from ..store.dialect import notify
from . import channels
from .operations import Operation

if TYPE_CHECKING:
    from .replay import BaseContext


@dataclasses.dataclass(frozen=True, slots=True)
class ChildHandle:
    """A child run started with ``ctx.start_child()``.

    ``result()`` waits for it (suspending the parent) and returns its result, or raises
    ``ChildWorkflowFailed``; ``cancel()`` cancels it. In an async workflow, await both.
    """

    run_id: str
    workflow_name: str
    # Where the parent started it: a workflow retry that fails on it starts it anew.
    position: int
    _ctx: Any = dataclasses.field(repr=False, compare=False)

    def result(self) -> Any:
        """Wait for the child to finish; return its result (or raise ChildWorkflowFailed)."""
        return self._ctx._child_result(self)

    def cancel(self, reason: str = "") -> Any:
        """Cancel the child (and its children), once for this point of the workflow."""
        return self._ctx._cancel_child(self, reason)


def start_options(target: Workflow[Any, Any] | StartOptions | str) -> StartOptions:
    """Return the start options of a child target: a workflow, ``wf.using(...)``, a name."""
    if isinstance(target, StartOptions):
        options = target
    elif isinstance(target, Workflow):
        options = target.using()
    elif isinstance(target, str):
        options = get_workflow(target).using()
    else:
        raise TypeError("start_child() takes a workflow, workflow.using(...), or a name.")
    if options.idempotency_key is not None:
        raise DurableError(
            "A child run takes no idempotency key: its parent starts it exactly once."
        )
    return options


def start(ctx: BaseContext, op: Operation, options: StartOptions, args: Any, kwargs: Any) -> str:
    """Insert the child run with the parent's checkpoint; return the child's id."""
    depth = ctx.claim.depth + 1
    limit = get_settings().MAX_CHILD_DEPTH
    if depth > limit:
        raise DurableError(
            f"Starting {options.workflow.name!r} would nest runs {depth} deep, past "
            f"DJANGO_DURABLE['MAX_CHILD_DEPTH'] = {limit}."
        )
    now = ctx.clock.now()
    delay = options.delay
    if isinstance(delay, datetime):
        available_at = delay
    elif isinstance(delay, timedelta):
        available_at = now + delay
    else:
        available_at = now + timedelta(seconds=delay or 0)
    deadline_at = None
    if options.workflow.timeout is not None:
        deadline_at = available_at + timedelta(seconds=options.workflow.timeout)
    if ctx.deadline is not None:  # a child never outlives its parent's deadline
        deadline_at = ctx.deadline if deadline_at is None else min(deadline_at, ctx.deadline)
    run = Run(
        **options.run_fields(args, kwargs),
        available_at=available_at,
        deadline_at=deadline_at,
        parent_id=ctx.claim.run_id,
        parent_position=op.position,
        depth=depth,
        owner_id=ctx.claim.owner_id,
    )
    # In the trace of the parent's execution: its span is the current one.
    run.trace_context = telemetry.started(
        run_id=str(run.pk), workflow_name=run.workflow_name, queue=run.queue
    )
    with transaction.atomic(using=ctx.alias):
        run.save(force_insert=True, using=ctx.alias)
        ctx.complete(op, str(run.pk))  # fenced: a worker that lost the parent starts nothing
        notify([f"q:{run.queue}"], alias=ctx.alias)
    return str(run.pk)


def _outcomes(ctx: BaseContext, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Return the status, result and error of the runs that finished (by id)."""
    rows = (
        Run.objects.using(ctx.alias)
        .filter(pk__in=run_ids)
        .values("id", "status", "result", "error")
    )
    found = {str(row["id"]): row for row in rows}
    outcomes: dict[str, dict[str, Any]] = {}
    for run_id in run_ids:
        row = found.get(run_id)
        if row is None:  # deleted (pruned) while its parent waited
            error = {
                "type": "django_durable.RunNotFound",
                "message": f"Child run {run_id} is gone.",
            }
            outcomes[run_id] = {"status": RunStatus.FAILED, "result": None, "error": error}
        elif row["status"] in RunStatus.terminal():
            outcomes[run_id] = {
                "status": row["status"],
                "result": row["result"],
                "error": row["error"],
            }
    return outcomes


def raise_failed(outcome: dict[str, Any], handle: ChildHandle) -> None:
    """Raise ChildWorkflowFailed if the recorded outcome of ``handle`` is not a success."""
    if outcome["status"] == RunStatus.COMPLETED:
        return
    error = outcome.get("error") or {}
    verb = "was cancelled" if outcome["status"] == RunStatus.CANCELLED else "failed"
    exc = ChildWorkflowFailed(
        f"Child run {handle.run_id} of {handle.workflow_name!r} {verb}: "
        f"{error.get('type', 'Error')}: {error.get('message', '')}",
        run_id=handle.run_id,
        error=error,
    )
    exc.__durable_position__ = handle.position  # type: ignore[attr-defined]
    raise exc


def result(ctx: BaseContext, op: Operation, handle: ChildHandle) -> Any:
    """Record the child's outcome once it has finished, or return the signal to wait."""

    def take() -> Any:
        outcome = _outcomes(ctx, [handle.run_id]).get(handle.run_id)
        return channels.MISSING if outcome is None else ctx.complete(op, outcome)

    return channels.wait_for(
        ctx,
        op,
        wake_on=f"c:{handle.run_id}",
        timeout=None,
        reason=f"child run {handle.run_id} ({handle.workflow_name})",
        take=take,
        timed_out=lambda: None,
    )


def gather(ctx: BaseContext, op: Operation, handles: list[ChildHandle]) -> Any:
    """Record the outcomes of every child once all finished, or the first failure.

    While some are running the parent waits for the first unfinished one (in order), so
    it wakes about ln(n) times for n children that finish in any order, not n times.
    """
    ids = [handle.run_id for handle in handles]

    def take() -> Any:
        outcomes = _outcomes(ctx, ids)
        for index, run_id in enumerate(ids):
            outcome = outcomes.get(run_id)
            if outcome is not None and outcome["status"] != RunStatus.COMPLETED:
                return ctx.complete(op, {"failed": index, "outcome": outcome})
        if len(outcomes) < len(ids):
            return channels.MISSING
        return ctx.complete(op, {"results": [outcomes[run_id]["result"] for run_id in ids]})

    done = take()
    if done is not channels.MISSING:
        return done
    finished = _outcomes(ctx, ids)
    first = next(run_id for run_id in ids if run_id not in finished)
    return channels.wait_for(
        ctx,
        op,
        wake_on=f"c:{first}",
        timeout=None,
        reason=f"{len(ids)} child runs",
        take=take,
        timed_out=lambda: None,
    )


def gathered(document: dict[str, Any], handles: list[ChildHandle]) -> list[Any]:
    """Return the results of a recorded gather, or raise for the failed child."""
    if "failed" in document:
        raise_failed(document["outcome"], handles[int(document["failed"])])
    return list(document["results"])


def cancel(ctx: BaseContext, op: Operation, handle: ChildHandle, reason: str) -> None:
    """Cancel the child's tree, with the parent's checkpoint."""
    with transaction.atomic(using=ctx.alias):
        trees.cancel_tree(
            uuid.UUID(handle.run_id), reason or "cancelled by its parent", alias=ctx.alias
        )
        ctx.complete(op, None)
