"""Events, messages, values and streams inside a workflow: what ``ctx``'s operations do.

Each function runs one operation that ``ctx._begin`` has positioned and that is not
recorded yet (or is a wait recorded as still waiting). It may do database work, so the
async context calls it in the worker thread. A function returns the operation's value,
or a signal (an exception) for the face to raise: that way nothing is raised across the
thread boundary of an async workflow.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction

from ..core import serialization
from ..core.conf import get_settings
from ..core.statuses import StepStatus
from ..exceptions import DurableError, EventDataInvalid, EventTimeout, PayloadTooLarge
from ..store import channels
from ..store.records import Row
from .operations import Operation

if TYPE_CHECKING:
    from .replay import BaseContext

MISSING: Any = object()  # "nothing arrived yet" from a take function


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedEvent:
    """The event a ``wait_for_event`` received."""

    id: int
    name: str
    data: Any
    source: str
    type: str
    time: datetime


def received(document: dict[str, Any], model: Any = None) -> ReceivedEvent:
    """Build the ReceivedEvent of a recorded event, validating ``data`` with ``model``."""
    data = document["data"]
    if model is not None:
        try:
            data = model.model_validate(data)
        except Exception as exc:  # pydantic.ValidationError, or anything the model raises
            raise EventDataInvalid(
                f"Event {document['name']!r} (id {document['id']}) does not match "
                f"{getattr(model, '__name__', model)}: {exc}"
            ) from exc
    return ReceivedEvent(
        id=document["id"],
        name=document["name"],
        data=data,
        source=document["source"],
        type=document["type"],
        time=document["time"],
    )


def wait_for(
    ctx: BaseContext,
    op: Operation,
    *,
    wake_on: str,
    timeout: float | None,
    reason: str,
    take: Callable[[], Any],
    timed_out: Callable[[], Any],
    floor: int = 0,
) -> Any:
    """Take what the run waits for, or time out, or return the signal that suspends it.

    The first time the wait is reached it is recorded as ``waiting`` with its deadline,
    so the timeout counts from then, however often the run is replayed.
    """
    record = ctx.checkpoints.get(op.position)
    if record is not None and record.status == StepStatus.WAITING:
        deadline = serialization.loads(record.result)["deadline"]
    else:
        record = None
        deadline = None if timeout is None else ctx.clock.after(timeout)
    value = take()
    if value is not MISSING:
        return value
    if deadline is not None and ctx.clock.now() >= deadline:
        return timed_out()
    if record is None:
        marker = serialization.dumps({"deadline": deadline, "floor": floor}, what="A wait")
        ctx.checkpoints.write(op.position, op.kind, op.name, StepStatus.WAITING, result=marker)
    return ctx.suspend(deadline, reason, wake_on=wake_on, floor=floor)


# --- events ----------------------------------------------------------------------------


def event_floor(ctx: BaseContext, name: str, position: int) -> int:
    """Return the id of the newest event ``name`` this run received before ``position``:
    by a ``wait_for_event``, or as the winner of a ``first_of``."""
    floor = 0
    for earlier in range(position):
        record = ctx.checkpoints.get(earlier)
        if not record or record.status != StepStatus.COMPLETED or not record.result:
            continue
        if (record.kind, record.name) == ("event", name):
            floor = max(floor, int(serialization.loads(record.result)["id"]))
        elif record.kind == "first_of":
            won = serialization.loads(record.result)
            if (won.get("kind"), won.get("name")) == ("event", name):
                floor = max(floor, int(won["value"]["id"]))
    return floor


def wait_for_event(
    ctx: BaseContext, op: Operation, name: str, timeout: float | None
) -> dict[str, Any] | BaseException:
    """Receive the newest emission of ``name`` this run has not seen, or wait for one."""
    floor = event_floor(ctx, name, op.position)

    def take() -> Any:
        row = channels.latest_event(name, floor, alias=ctx.alias)
        if row is None:
            return MISSING
        document = {
            "id": row.id,
            "name": row.name,
            "data": serialization.loads(row.data),
            "source": row.source,
            "type": row.type,
            "time": row.time,
        }
        return ctx.complete(op, document)

    def timed_out() -> BaseException:
        error = EventTimeout(f"No event {name!r} arrived within {timeout} seconds.")
        return ctx.fail(op, error)

    return wait_for(
        ctx,
        op,
        wake_on=f"e:{name}",
        timeout=timeout,
        reason=f"event {name!r}",
        take=take,
        timed_out=timed_out,
        floor=floor,
    )


def emit_event(
    ctx: BaseContext, op: Operation, name: str, data: Any, source: str, type: str
) -> int:
    """Store an event once for this position (with its checkpoint); return its id."""
    text = serialization.dumps(data, what=f"The data of event {name!r}")
    with transaction.atomic(using=ctx.alias):
        event_id = channels.insert_event(
            name,
            text,
            source=source,
            type=type,
            run_id=ctx.claim.run_id,
            # Once per run position, even if a workflow retry runs this operation again.
            idempotency_key=f"run:{ctx.run_id}:{op.position}",
            alias=ctx.alias,
        )
        ctx.complete(op, event_id)
    return event_id


# --- messages --------------------------------------------------------------------------


def recv(
    ctx: BaseContext, op: Operation, topic: str, timeout: float | None
) -> dict[str, Any] | BaseException:
    """Take the oldest message on ``topic`` (consumed with the checkpoint), or wait."""

    def take() -> Any:
        taken = ctx.checkpoints.take_message(topic, op.position, op.name)
        return MISSING if taken is None else serialization.loads(taken)

    return wait_for(
        ctx,
        op,
        wake_on=f"m:{topic}",
        timeout=timeout,
        reason=f"message on {topic!r}" if topic else "message",
        take=take,
        timed_out=lambda: ctx.complete(op, {"timeout": True}),
    )


# --- values and streams ----------------------------------------------------------------


def set_value(ctx: BaseContext, op: Operation, key: str, value: Any) -> None:
    """Publish ``value`` under ``key`` once for this position (written with its checkpoint)."""
    text = serialization.dumps(value, what=f"Value {key!r}")
    row = Row(
        "durable_value",
        {"key": key, "value": text, "position": op.position},
        json=frozenset({"value"}),
        notify=f"v:{ctx.run_id}",
    )
    ctx.complete(op, None, row=row)


def write_stream(
    ctx: BaseContext, op: Operation, key: str, value: Any, *, closes: bool = False
) -> int:
    """Append ``value`` to stream ``key`` (or close it) once; return the offset used.

    The run is the stream's only writer and its records say where the stream stands, so
    the offset needs no query; the item is written with the checkpoint, or not at all.
    """
    cursor = ctx.stream_cursor(key)
    if cursor.closed:
        raise DurableError(f"Stream {key!r} of run {ctx.run_id} is closed.")
    text = None if closes else serialization.dumps(value, what=f"An item of stream {key!r}")
    offset = cursor.next_offset
    row = Row(
        "durable_stream",
        {"key": key, "offset": offset, "value": text, "closes": closes, "position": op.position},
        json=frozenset({"value"}),
        notify=f"s:{ctx.run_id}",
    )
    ctx.complete(op, offset, row=row)
    cursor.advance(offset, op.kind)
    return offset


# One write_stream_many is one statement and one commit: at most this many items, and at
# most this many times MAX_PAYLOAD_BYTES of JSON in all (an endless generator, or a whole
# table passed by mistake, gets an error instead of a statement the size of the memory).
BATCH_ITEMS = 10_000
BATCH_PAYLOADS = 16


def stream_items(key: str, values: Iterable[Any]) -> list[Any]:
    """Return the items of ``ctx.write_stream_many(key, values)`` as a list.

    A string, bytes or a mapping is refused: iterating it would write its characters or
    its keys, one item each, which is never what was meant. So is more than
    ``BATCH_ITEMS`` items (read no further than one past it).
    """
    if isinstance(values, str | bytes | bytearray | Mapping):
        raise TypeError(
            f"write_stream_many({key!r}, ...) takes an iterable of items, not a "
            f"{type(values).__name__}; to write it as one item, use write_stream()."
        )
    items = list(itertools.islice(values, BATCH_ITEMS + 1))
    if len(items) > BATCH_ITEMS:
        raise ValueError(
            f"write_stream_many({key!r}, ...) writes at most {BATCH_ITEMS:,} items in one "
            "commit, and was given more: write them with several calls."
        )
    return items


def write_stream_many(ctx: BaseContext, op: Operation, key: str, items: list[Any]) -> range:
    """Append ``items`` to stream ``key`` at consecutive offsets, with one checkpoint.

    All or nothing: every item is encoded before anything is written, and the items are
    written with the checkpoint (one statement on PostgreSQL, one NOTIFY). The checkpoint's
    result is ``[first, stop]``, so replay returns the same offsets. No items: a checkpoint
    alone, and an empty range at the stream's next offset.
    """
    cursor = ctx.stream_cursor(key)
    if cursor.closed:
        raise DurableError(f"Stream {key!r} of run {ctx.run_id} is closed.")
    texts = [
        serialization.dumps(item, what=f"An item of stream {key!r} (number {index} of the batch)")
        for index, item in enumerate(items)
    ]
    total, maximum = sum(map(len, texts)), BATCH_PAYLOADS * get_settings().MAX_PAYLOAD_BYTES
    if total > maximum:
        raise PayloadTooLarge(
            f"The items of stream {key!r} for one write_stream_many are {total} bytes of "
            f"JSON, over the limit of {maximum} bytes ({BATCH_PAYLOADS} times "
            "DJANGO_DURABLE['MAX_PAYLOAD_BYTES']): write them with several calls."
        )
    offsets = range(cursor.next_offset, cursor.next_offset + len(texts))
    notify = f"s:{ctx.run_id}"
    rows = [
        Row(
            "durable_stream",
            {"key": key, "offset": offset, "value": text, "closes": False, "position": op.position},
            json=frozenset({"value"}),
            notify=notify,
        )
        for offset, text in zip(offsets, texts, strict=True)
    ]
    result = ctx.encode_result(op, [offsets.start, offsets.stop])
    ctx.checkpoints.write_rows(op.position, op.kind, op.name, result=result, rows=rows)
    cursor.advance(offsets.stop - 1, op.kind)
    return offsets


def replayed_offsets(recorded: Any) -> range:
    """Return the offsets a recorded ``write_stream_many`` wrote (its result: [first, stop])."""
    first, stop = recorded
    return range(int(first), int(stop))


def progress(done: float, total: float | None, message: str) -> dict[str, Any]:
    """Return the ``"progress"`` value: done, total, percent (of total) and message."""
    percent = None
    if total:
        percent = round(max(0.0, min(100.0, done * 100.0 / total)), 1)
    return {"done": done, "total": total, "percent": percent, "message": message}
