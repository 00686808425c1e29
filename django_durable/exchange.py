"""Talking to runs from application code: events, messages, values and streams.

Writes join the caller's ``transaction.atomic()`` block: what a rolled-back request
emitted or sent never existed, and runs are woken only when the transaction commits.
Waiting reads (``get_value(timeout=)``, ``read_stream(follow=True)``) sleep until a
NOTIFY on PostgreSQL, polling as the fallback.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Max

from . import db_channels, serialization
from .client import _alias, _get, _seconds
from .exceptions import RunNotFound
from .models import Run, RunValue, StreamItem
from .notify import AsyncWaiter, Waiter, wait_until
from .registry import check_name

# Stream items read per query.
STREAM_BATCH = 500


def _text(value: str | None, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise ValueError(f"{what} must be a string of at most 255 characters.")
    return value


# --- events ----------------------------------------------------------------------------


def emit_event(
    name: str,
    data: Any = None,
    source: str | None = None,
    type: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Emit event ``name``; every run waiting for it resumes, and later waiters see it too.

    Returns the event's id. ``source`` and ``type`` describe it (as in CloudEvents); the
    same ``idempotency_key`` emits once (the first event's id is returned).
    """
    check_name(name, "event")
    text = serialization.dumps(data, what=f"The data of event {name!r}")
    return db_channels.insert_event(
        name,
        text,
        source=_text(source, "source="),
        type=_text(type, "type="),
        idempotency_key=None
        if idempotency_key is None
        else _text(idempotency_key, "idempotency_key="),
        alias=_alias(),
    )


async def aemit_event(
    name: str,
    data: Any = None,
    source: str | None = None,
    type: str | None = None,
    *,
    idempotency_key: str | None = None,
) -> int:
    """Emit event ``name`` (async)."""
    return await sync_to_async(emit_event)(
        name, data, source, type, idempotency_key=idempotency_key
    )


# --- messages --------------------------------------------------------------------------


def send(
    run_id: Any, message: Any, topic: str | None = None, idempotency_key: str | None = None
) -> int:
    """Deliver ``message`` to a run; it is kept until the run's ``recv(topic)`` takes it.

    Returns the message's id; the same ``idempotency_key`` stores one message. Raises
    ``RunNotFound`` for an unknown run.
    """
    run = _get(run_id)
    name = "" if topic is None else check_name(topic, "message topic")
    if idempotency_key is not None:
        _text(idempotency_key, "idempotency_key=")
    text = serialization.dumps(message, what="The message")
    message_id = db_channels.insert_message(
        run.pk, name, text, idempotency_key=idempotency_key, alias=_alias()
    )
    if message_id is None:  # deleted between the two statements
        raise RunNotFound(f"No run has the id {str(run_id)!r}.")
    return message_id


async def asend(
    run_id: Any, message: Any, topic: str | None = None, idempotency_key: str | None = None
) -> int:
    """Deliver ``message`` to a run (async)."""
    return await sync_to_async(send)(run_id, message, topic, idempotency_key)


# --- values ----------------------------------------------------------------------------


def _latest_value(run: Run, key: str) -> tuple[Any] | None:
    row = (
        RunValue.objects.using(_alias())
        .filter(run_id=run.pk, key=key)
        .order_by("-id")
        .only("value")
        .first()
    )
    return None if row is None else (row.get_value(),)


def _value_or_end(run: Run, key: str, default: Any) -> tuple[Any] | None:
    found = _latest_value(run, key)
    if found is not None:
        return found
    # A run that finished without setting it never will: stop waiting.
    finished = Run.objects.using(_alias()).finished().filter(pk=run.pk).exists()
    return (default,) if finished else None


def get_value(
    run_id: Any, key: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """Return the newest value the run published under ``key``, or ``default``.

    With ``timeout``, wait up to that long for the key to be set (``default`` if it is
    not, or if the run finishes without setting it). Raises ``RunNotFound``.
    """
    run = _get(run_id)
    seconds = 0.0 if timeout is None else _seconds(timeout)
    found = _latest_value(run, key)
    if found is not None or seconds <= 0:
        return found[0] if found is not None else default
    keys = [f"v:{run.pk}", f"r:{run.pk}"]
    try:
        return wait_until(lambda: _value_or_end(run, key, default), keys=keys, timeout=seconds)[0]
    except TimeoutError:
        return default


async def aget_value(
    run_id: Any, key: str, timeout: float | timedelta | None = None, default: Any = None
) -> Any:
    """Return the newest value under ``key``, waiting up to ``timeout`` (async)."""
    from .notify import await_until

    run = await sync_to_async(_get)(run_id)
    seconds = 0.0 if timeout is None else _seconds(timeout)
    found = await sync_to_async(_latest_value)(run, key)
    if found is not None or seconds <= 0:
        return found[0] if found is not None else default
    check = sync_to_async(lambda: _value_or_end(run, key, default))
    keys = [f"v:{run.pk}", f"r:{run.pk}"]
    try:
        return (await await_until(check, keys=keys, timeout=seconds))[0]
    except TimeoutError:
        return default


def get_values(run_id: Any) -> dict[str, Any]:
    """Return the newest value of every key the run published."""
    run = _get(run_id)
    rows = RunValue.objects.using(_alias()).filter(run_id=run.pk)
    newest = rows.values("key").annotate(newest=Max("id")).values("newest")
    return {row.key: row.get_value() for row in rows.filter(id__in=newest).order_by("key")}


async def aget_values(run_id: Any) -> dict[str, Any]:
    """Return the newest value of every key the run published (async)."""
    return await sync_to_async(get_values)(run_id)


# --- streams ---------------------------------------------------------------------------


def stream_batch(run: Run, key: str, offset: int) -> list[StreamItem]:
    """Return up to STREAM_BATCH rows of stream ``key`` from ``offset`` (closing row included)."""
    return list(
        StreamItem.objects.using(_alias())
        .filter(run_id=run.pk, key=key, offset__gte=offset)
        .order_by("offset")[:STREAM_BATCH]
    )


def run_finished(run: Run) -> bool:
    """Return whether ``run`` is in a terminal state now."""
    return Run.objects.using(_alias()).finished().filter(pk=run.pk).exists()


def stream_items(
    run_id: Any, key: str, offset: int = 0, follow: bool = False
) -> Iterator[tuple[int, Any]]:
    """Yield ``(offset, value)`` of stream ``key`` from ``offset``, in order.

    With ``follow``, wait for new items until the stream is closed or the run finishes.
    Raises ``RunNotFound`` at once for an unknown run.
    """
    if offset < 0:
        raise ValueError("offset= cannot be negative.")
    run = _get(run_id)
    return _stream(run, key, offset, follow)


def _stream(run: Run, key: str, offset: int, follow: bool) -> Iterator[tuple[int, Any]]:
    waiter = Waiter([f"s:{run.pk}", f"r:{run.pk}"]) if follow else contextlib.nullcontext()
    with waiter:
        while True:
            # Read "finished" before the items: what was written before the end is read.
            finished = follow and run_finished(run)
            batch = stream_batch(run, key, offset)
            for item in batch:
                if item.closes:
                    return
                offset = item.offset + 1
                yield item.offset, item.get_value()
            if len(batch) == STREAM_BATCH:
                continue
            if not follow or finished:
                return
            assert isinstance(waiter, Waiter)
            waiter.sleep()


def read_stream(run_id: Any, key: str, offset: int = 0, follow: bool = False) -> Iterator[Any]:
    """Yield the values of stream ``key`` from ``offset``, in order.

    With ``follow``, block for new values until the stream is closed or the run ends.
    """
    return (value for _, value in stream_items(run_id, key, offset, follow))


async def astream_items(
    run_id: Any, key: str, offset: int = 0, follow: bool = False
) -> AsyncIterator[tuple[int, Any]]:
    """Yield ``(offset, value)`` of stream ``key`` (async; holds no thread while waiting)."""
    if offset < 0:
        raise ValueError("offset= cannot be negative.")
    run = await sync_to_async(_get)(run_id)
    waiter = AsyncWaiter([f"s:{run.pk}", f"r:{run.pk}"]) if follow else None
    with waiter or contextlib.nullcontext():
        while True:
            finished = follow and await sync_to_async(run_finished)(run)
            batch = await sync_to_async(stream_batch)(run, key, offset)
            for item in batch:
                if item.closes:
                    return
                offset = item.offset + 1
                yield item.offset, item.get_value()
            if len(batch) == STREAM_BATCH:
                continue
            if waiter is None or finished:
                return
            await waiter.asleep()


async def aread_stream(
    run_id: Any, key: str, offset: int = 0, follow: bool = False
) -> AsyncIterator[Any]:
    """Yield the values of stream ``key`` from ``offset`` (async)."""
    async for _, value in astream_items(run_id, key, offset, follow):
        yield value
