"""Finding and starting runs from application code; every function returns ``RunHandle``s."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async

from ..declarations.registry import get_workflow
from ..models import Run
from .forking import fork_run
from .handle import RunHandle
from .lookup import db_alias, get_row, run_ref
from .operating import reopen
from .starting import start_run

MAX_LIMIT = 1_000_000  # runs list_runs() returns at most


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


def get_run(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> RunHandle:
    """Return the handle of a run, or raise ``RunNotFound``.

    Name it by its id, or by ``key=``: the idempotency key it was started with.
    """
    return RunHandle(get_row(run_ref(run_id, key)))


async def aget_run(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> RunHandle:
    """Return the handle of a run, or raise ``RunNotFound`` (async)."""
    return await sync_to_async(get_run)(run_id, key=key)


def list_runs(
    workflow: str | None = None,
    status: str | Sequence[str] | None = None,
    limit: int = 100,
    **filters: Any,
) -> list[RunHandle]:
    """Return runs newest first, filtered by workflow name, status and model fields."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit= must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}.")
    runs = Run.objects.using(db_alias()).all()
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


def retry(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> RunHandle:
    """Start a failed or cancelled run again from its checkpoints (see ``RunHandle.retry``).

    What completed stays; the run goes back to where it failed (the failing step runs
    again) or was cancelled, with ``attempt`` one higher and its deadline renewed. Its
    child runs that were cancelled with it (when it was cancelled or finished) start
    again from their checkpoints too, so that it finds them running. ``key=`` names the
    run by its idempotency key instead of its id.
    """
    return RunHandle(reopen(run_ref(run_id, key)))


async def aretry(run_id: str | uuid.UUID | None = None, *, key: str | None = None) -> RunHandle:
    """Start a failed or cancelled run again from its checkpoints (async)."""
    return await sync_to_async(retry)(run_id, key=key)


def fork(
    run_id: str | uuid.UUID | None = None,
    *,
    from_step: int,
    key: str | None = None,
    idempotency_key: str | None = None,
) -> RunHandle:
    """Start a new run of a finished run's workflow and input, from its first checkpoints.

    The new run's records at positions 0 to ``from_step - 1`` are copies of the run's (with
    the values and stream items they wrote): their outcomes are replayed, their side effects
    not repeated. The operations from ``from_step`` on run again, on the code deployed now.
    The run must be completed, failed or cancelled; ``RunNotForkable`` if it is not, or if
    the operations before ``from_step`` cannot all be copied (fewer were recorded, one did
    not finish, or one started a child run that is still going). The fork has the run's
    owner, queue and priority, ``forked_from`` set to it, and ``idempotency_key`` if given
    (the same key returns the same fork). ``key=`` names the run by its idempotency key.
    """
    return RunHandle(
        fork_run(run_id, from_step=from_step, key=key, idempotency_key=idempotency_key)
    )


async def afork(
    run_id: str | uuid.UUID | None = None,
    *,
    from_step: int,
    key: str | None = None,
    idempotency_key: str | None = None,
) -> RunHandle:
    """Start a new run of a finished run's workflow and input, from its first checkpoints
    (async)."""
    return await sync_to_async(fork)(
        run_id, from_step=from_step, key=key, idempotency_key=idempotency_key
    )
