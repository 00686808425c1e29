"""Starting runs from application code.

Writes join the caller's ``transaction.atomic()`` block: a rolled-back request leaves no
run behind, and workers are notified only when the transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction

from ..core import clock, telemetry
from ..core.durations import optional_seconds
from ..declarations.workflows import StartOptions
from ..exceptions import DurableError
from ..models import Run
from ..store.dialect import notify
from . import flow
from .handle import RunHandle
from .lookup import db_alias


def _schedule(options: StartOptions) -> tuple[Any, Any]:
    """Return ``available_at`` and ``deadline_at`` for a new run (a debounced one waits
    out its window after the delay)."""
    timeout = options.workflow.timeout
    spec = options.workflow.flow
    window = (spec.debounce if spec is not None else None) or 0.0
    delay = options.delay
    if isinstance(delay, datetime):  # StartOptions checked it is aware
        delay += timedelta(seconds=window)
        deadline = delay + timedelta(seconds=timeout) if timeout is not None else None
        return delay, deadline
    seconds = (optional_seconds(delay, "delay=") or 0.0) + window
    deadline = clock.database_time(seconds + timeout) if timeout is not None else None
    return clock.database_time(seconds), deadline


def start_run(options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]) -> RunHandle:
    """Insert a pending run (or find the one with the same idempotency key)."""
    return create_run(options, args, kwargs)[0]


async def astart_run(
    options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]
) -> RunHandle:
    """Insert a pending run (async)."""
    return await sync_to_async(start_run)(options, args, kwargs)


def create_run(
    options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[RunHandle, bool]:
    """Insert a pending run; return its handle and whether it is new (not found by key).

    A singleton start finds the unfinished run of its key, and a debounced start the
    pending run of its key, which it gives its input and delays (``client.flow``): those
    are returned, not new.
    """
    workflow = options.workflow
    key = options.idempotency_key
    alias = db_alias()
    if key is not None:
        existing = Run.objects.using(alias).filter(idempotency_key=key).first()
        if existing is not None:
            return _same_workflow(existing, workflow.name), False
    available_at, deadline_at = _schedule(options)
    run = new_run(options, args, kwargs, available_at=available_at, deadline_at=deadline_at)
    with transaction.atomic(using=alias):
        found = flow.existing_run(run, workflow.flow, alias=alias)
        if found is not None:
            return RunHandle(found), False
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
        notify([f"q:{run.queue}"], alias=alias)
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
) -> Run:
    """Return an unsaved pending run of ``options`` (input encoded and checked), with the
    trace context of the code starting it."""
    run = Run(
        **options.run_fields(args, kwargs),
        owner=options.owner,
        available_at=available_at,
        deadline_at=deadline_at,
    )
    run.trace_context = telemetry.started(
        run_id=str(run.pk), workflow_name=run.workflow_name, queue=run.queue
    )
    return run


def _same_workflow(run: Run, name: str) -> RunHandle:
    if run.workflow_name != name:
        raise DurableError(
            f"Idempotency key {run.idempotency_key!r} already started run {run.id} of "
            f"workflow {run.workflow_name!r}, not {name!r}."
        )
    return RunHandle(run)
