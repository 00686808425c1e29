"""Database calls from code that may be running on an event loop's thread.

Django refuses synchronous queries on a thread that runs an event loop
(``SynchronousOnlyOperation``). An ``async def`` workflow begins its operations there, and
a few of them must touch the database before they can go on: the marker of a cancellation,
the reason of a cancellation just heard. Those rare calls go to a short-lived thread of
their own, which closes its connections when done; everywhere else they run in place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")


def call_off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return ``fn(*args, **kwargs)``, called in another thread if this one runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="durable-off-loop") as pool:
        return pool.submit(_closing, fn, args, kwargs).result()


def _closing(fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    try:
        return fn(*args, **kwargs)
    finally:
        connections.close_all()  # this thread's, opened for this one call
