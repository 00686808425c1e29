"""Event-triggered workflows: deliveries written with each event, dispatched as runs.

Storing an event writes, in the same transaction, a ``TriggerDelivery`` row for every
workflow that ``trigger_on_event``s its name. A dispatcher (every worker, in each
maintenance round) reads a workflow's oldest pending deliveries and, once they fill a
batch or the oldest has waited ``batch_timeout``, starts one run with them and deletes
them in the transaction that inserts the run. So each event reaches each workflow exactly
once: a rolled-back emission leaves no delivery, a delivery is gone exactly when its run
exists, and events committing out of id order are not skipped (no cursor to jump over
them).

On PostgreSQL one dispatcher per workflow works at a time (a transaction-level advisory
lock; the others skip it), which keeps batches in event order. SQLite runs one writing
transaction at a time. In both, the run's idempotency key (the batch's first event) makes
a second start of the same batch find the first run instead of starting another.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.db import InterfaceError, OperationalError, transaction

from ..client.starting import create_run
from ..core import serialization
from ..declarations.registry import registered_workflows
from ..declarations.workflows import Workflow
from ..exceptions import DurableError, PayloadTooLarge
from ..store.deliveries import (
    delete_deliveries,
    lock_workflow,
    notify_key,
    oldest_deliveries,
    pending_workflow_names,
)
from ..store.dialect import Dialect, dialect

logger = logging.getLogger("django_durable")


# Batches one dispatch starts per workflow; the rest wait for the next round.
MAX_BATCHES = 100


# Pending deliveries of a workflow that is not registered are reported this often.
ORPHAN_WARNING_SECONDS = 300.0


_orphans_warned: dict[str, float] = {}  # name -> when to report it again (monotonic)


def notify_keys() -> list[str]:
    """Return the NOTIFY payloads of every registered triggered workflow."""
    workflows = registered_workflows().values()
    return [notify_key(wf.name) for wf in workflows if wf.trigger is not None]


def dispatch_triggers(*, alias: str | None = None) -> int:
    """Start a run for every due batch of pending deliveries; return how many started.

    One workflow's failure is logged and does not stop the others; database outages
    are raised (the worker backs off). ``alias`` is the durable database (``DATABASE``):
    runs are started there, in the transaction that deletes their deliveries.
    """
    d = dialect(alias)
    workflows = registered_workflows()
    started = 0
    orphans = []
    for name in pending_workflow_names(d):
        workflow = workflows.get(name)
        if workflow is None or workflow.trigger is None:
            orphans.append(name)
            continue
        started += _dispatch_workflow(d, workflow)
    if orphans:
        _warn_orphans(orphans)
    return started


def _warn_orphans(names: list[str]) -> None:
    now = time.monotonic()
    due = [name for name in names if now >= _orphans_warned.get(name, float("-inf"))]
    if not due:
        return
    _orphans_warned.update(dict.fromkeys(due, now + ORPHAN_WARNING_SECONDS))
    logger.warning(
        "Events wait for workflows that are not registered or no longer trigger_on_event: "
        "%s. Their deliveries (and events: prune keeps them) wait until the workflow is back "
        "or you delete them.",
        ", ".join(due),
    )


def _dispatch_workflow(d: Dialect, workflow: Workflow[Any, Any]) -> int:
    started = 0
    for _ in range(MAX_BATCHES):
        try:
            with transaction.atomic(using=d.connection.alias):
                outcome = _dispatch_batch(d, workflow)
        except (InterfaceError, OperationalError):
            raise  # the database, not this workflow: the worker backs off
        except Exception:
            logger.exception("Could not start a run event-triggered for %r", workflow.name)
            break
        if outcome is None:
            break
        started += outcome
    return started


def _dispatch_batch(d: Dialect, workflow: Workflow[Any, Any]) -> int | None:
    """Start a run with the oldest batch if it is due; ``None`` when there is nothing to do.

    Returns 1 if a run started, 0 if the batch turned out to be started already.
    """
    trigger = workflow.trigger
    assert trigger is not None
    if not lock_workflow(d, workflow.name):
        return None
    rows = oldest_deliveries(
        d, workflow.name, limit=trigger.batch_size, batch_timeout=trigger.batch_timeout
    )
    if not rows or (len(rows) < trigger.batch_size and not any(row[6] for row in rows)):
        return None
    events = [
        {
            "id": int(row[0]),
            "name": row[1],
            "data": _decode(row[2]),
            "source": row[3],
            "type": row[4],
            "time": d.read_datetime(row[5]),
        }
        for row in rows
    ]
    return _start_batch(d, workflow, events)


def _decode(data: Any) -> Any:
    # JSON text on both backends (Django reads jsonb as text), a document just in case.
    if isinstance(data, str | bytes):
        return serialization.loads(data)
    return serialization.from_document(data)


def _start_batch(d: Dialect, workflow: Workflow[Any, Any], events: list[dict[str, Any]]) -> int:
    """Start the run of ``events`` (fewer if they are too big together); delete their deliveries."""
    key = f"trigger:{workflow.name}:{events[0]['id']}"
    while True:
        try:
            handle, created = create_run(
                workflow.using(idempotency_key=key), [{"events": events}], {}
            )
            break
        except PayloadTooLarge:
            if len(events) == 1:
                raise
            events = events[: len(events) // 2]  # the rest starts the next batch
    covered = [event["id"] for event in events] if created else _event_ids(handle.model)
    if events[0]["id"] not in covered:
        # Dispatching would find the same batch and the same run again, for ever.
        raise DurableError(
            f"Run {handle.id} holds the idempotency key {key!r} but not event "
            f"{events[0]['id']}; its deliveries stay pending. Was the key used by hand?"
        )
    # Not created: another dispatcher started this batch while this one read it (it
    # deleted the deliveries too); the next read sees what is left.
    delete_deliveries(d, workflow.name, covered)
    return 1 if created else 0


def _event_ids(run: Any) -> list[int]:
    """Return the ids of the events a triggered run was started with."""
    args, _ = run.get_input()
    payload = args[0] if args else None
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list):
        return []
    return [event["id"] for event in events if isinstance(event, dict) and "id" in event]
