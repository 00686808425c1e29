"""Server-Sent Events of a run's stream: resumable, unbuffered, light on connections.

Each event is ``id: <offset>`` plus ``data: <json>``; a client that reconnects with
``Last-Event-ID`` resumes after it. The stream ends with ``event: close`` when the run
closed it, ``event: end`` when the run finished, or after API_STREAM_SECONDS (the
browser reconnects and resumes). A quiet follower gives back its database connection
(see ``exchange.poll_stream``) and sends a keep-alive comment every 15 seconds. Under
ASGI the frames come from an async generator (a sync one would be buffered), under
WSGI from a sync one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

from django.core.serializers.json import DjangoJSONEncoder

from ..conf import get_settings
from ..exchange import StreamPoll, apoll_stream, poll_stream
from ..models import Run

# Seconds of silence after which a comment line keeps proxies from closing the stream.
KEEPALIVE_SECONDS = 15.0


def _frames(poll: StreamPoll) -> Iterator[bytes]:
    """Return the SSE frames of one poll of the stream."""
    if poll.kind == "items":
        for item in poll.items:
            data = json.dumps(item.get_value(), cls=DjangoJSONEncoder)
            yield f"id: {item.offset}\ndata: {data}\n\n".encode()
    elif poll.kind == "closed":
        yield b"event: close\ndata: {}\n\n"
    elif poll.kind == "ended":
        yield f"event: end\ndata: {json.dumps({'status': poll.status})}\n\n".encode()
    else:
        yield b": keep-alive\n\n"


def _retry() -> bytes:
    return f"retry: {int(get_settings().POLL_INTERVAL * 1000)}\n\n".encode()


def events(run: Run, key: str, offset: int) -> Iterator[bytes]:
    """Yield the SSE frames of stream ``key`` from ``offset`` (for WSGI)."""
    yield _retry()
    polls = poll_stream(
        run,
        key,
        offset,
        follow=True,
        max_seconds=get_settings().API_STREAM_SECONDS,
        idle=KEEPALIVE_SECONDS,
    )
    for poll in polls:
        yield from _frames(poll)


async def aevents(run: Run, key: str, offset: int) -> AsyncIterator[bytes]:
    """Yield the SSE frames of stream ``key`` from ``offset`` (for ASGI)."""
    yield _retry()
    polls = apoll_stream(
        run,
        key,
        offset,
        follow=True,
        max_seconds=get_settings().API_STREAM_SECONDS,
        idle=KEEPALIVE_SECONDS,
    )
    async for poll in polls:
        for frame in _frames(poll):
            yield frame
