"""Server-Sent Events of a run's stream: resumable, unbuffered, light on connections.

Each event is ``id: <offset>`` plus ``data: <json>``; a client that reconnects with
``Last-Event-ID`` resumes after it. The stream ends with ``event: close`` when the run
closed it, ``event: end`` when the run finished, or after API_STREAM_SECONDS (the
browser reconnects and resumes). Between polls the database connection is released,
so an open stream does not hold one. Under ASGI the events come from an async
generator (a sync one would be buffered); under WSGI from a sync one.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator

from asgiref.sync import sync_to_async
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections

from ..conf import get_settings
from ..exchange import run_finished, stream_batch
from ..models import Run, StreamItem
from ..notify import AsyncWaiter, Waiter

# Seconds of silence after which a comment line keeps proxies from closing the stream.
KEEPALIVE_SECONDS = 15.0


def _frames(batch: list[StreamItem]) -> tuple[list[bytes], int | None, bool]:
    """Turn rows into SSE frames; return them, the next offset, and whether it closed."""
    frames: list[bytes] = []
    next_offset = None
    for item in batch:
        if item.closes:
            frames.append(b"event: close\ndata: {}\n\n")
            return frames, next_offset, True
        data = json.dumps(item.get_value(), cls=DjangoJSONEncoder)
        frames.append(f"id: {item.offset}\ndata: {data}\n\n".encode())
        next_offset = item.offset + 1
    return frames, next_offset, False


def _end_frame(run: Run) -> bytes:
    status = (
        Run.objects.using(get_settings().DATABASE).values_list("status", flat=True).get(pk=run.pk)
    )
    return f"event: end\ndata: {json.dumps({'status': status})}\n\n".encode()


def _release_connection() -> None:
    connection = connections[get_settings().DATABASE]
    if not connection.in_atomic_block:
        connection.close()


def events(run: Run, key: str, offset: int) -> Iterator[bytes]:
    """Yield the SSE frames of stream ``key`` from ``offset`` (for WSGI)."""
    conf = get_settings()
    stop_at = time.monotonic() + conf.API_STREAM_SECONDS
    yield f"retry: {int(conf.POLL_INTERVAL * 1000)}\n\n".encode()
    with Waiter([f"s:{run.pk}", f"r:{run.pk}"]) as waiter:
        quiet_since = time.monotonic()
        while time.monotonic() < stop_at:
            finished = run_finished(run)
            batch = stream_batch(run, key, offset)
            end = _end_frame(run) if finished and not batch else None
            _release_connection()
            frames, next_offset, closed = _frames(batch)
            yield from frames
            if closed:
                return
            if end is not None:
                yield end
                return
            if next_offset is not None:
                offset, quiet_since = next_offset, time.monotonic()
                continue
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            waiter.sleep(KEEPALIVE_SECONDS)


async def aevents(run: Run, key: str, offset: int) -> AsyncIterator[bytes]:
    """Yield the SSE frames of stream ``key`` from ``offset`` (for ASGI)."""
    conf = get_settings()
    stop_at = time.monotonic() + conf.API_STREAM_SECONDS
    yield f"retry: {int(conf.POLL_INTERVAL * 1000)}\n\n".encode()

    def poll(offset: int) -> tuple[list[StreamItem], bytes | None]:
        finished = run_finished(run)
        batch = stream_batch(run, key, offset)
        end = _end_frame(run) if finished and not batch else None
        _release_connection()
        return batch, end

    with AsyncWaiter([f"s:{run.pk}", f"r:{run.pk}"]) as waiter:
        quiet_since = time.monotonic()
        while time.monotonic() < stop_at:
            batch, end = await sync_to_async(poll)(offset)
            frames, next_offset, closed = _frames(batch)
            for frame in frames:
                yield frame
            if closed:
                return
            if end is not None:
                yield end
                return
            if next_offset is not None:
                offset, quiet_since = next_offset, time.monotonic()
                continue
            if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                yield b": keep-alive\n\n"
                quiet_since = time.monotonic()
            await waiter.asleep(KEEPALIVE_SECONDS)
