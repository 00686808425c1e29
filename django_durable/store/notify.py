"""Waking up: one LISTEN connection per process on PostgreSQL, polling everywhere.

Payloads on the channel are ``q:<queue>`` (work is ready in a queue; ``q:*`` any queue),
``r:<run id>`` (a run finished), ``v:<run id>`` (it published a value), ``s:<run id>``
(it wrote to a stream), ``x:<run id>`` (someone asked it to stop: its worker cancels
it) and ``t:<workflow>`` (an event that triggers the workflow was stored). A
notification is only ever a hint: every waiter also re-checks the database at least once
per ``POLL_INTERVAL``, so a lost notification (listener reconnecting, database restart)
costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self, TypeVar

from django.db import connections
from psycopg import sql

from ..core.conf import get_settings

logger = logging.getLogger("django_durable")
T = TypeVar("T")
Callback = Callable[[], None]


# Seconds the listener waits for its own probe notification after LISTEN, and before it
# tries again when the probe did not come back (a pooler in transaction mode).
PROBE_TIMEOUT = 5.0
PROBE_RETRY = 60.0
_probe_warned = False


class Listener:
    """A background thread that LISTENs and calls the subscribers of each payload.

    After each LISTEN it checks that notifications reach it: it sends a probe through a
    new connection of the durable database, as any NOTIFY is sent, and waits for it. Behind
    PgBouncer in transaction pooling mode LISTEN is accepted but nothing arrives; then it
    warns once, stays disconnected (every waiter polls at POLL_INTERVAL) and probes again
    after a minute. ``LISTEN_DATABASE`` names a direct connection that avoids this.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.listen_alias = get_settings().LISTEN_DATABASE or alias
        self.connected = threading.Event()
        self._subscribers: dict[str, set[Callback]] = defaultdict(set)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, keys: Iterable[str], callback: Callback) -> None:
        """Call ``callback`` when a payload in ``keys`` arrives (and after reconnecting)."""
        with self._lock:
            for key in keys:
                self._subscribers[key].add(callback)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="durable-listener", daemon=True
                )
                self._thread.start()

    def unsubscribe(self, keys: Iterable[str], callback: Callback) -> None:
        """Stop calling ``callback`` for ``keys``."""
        with self._lock:
            for key in keys:
                callbacks = self._subscribers.get(key)
                if callbacks is not None:
                    callbacks.discard(callback)
                    if not callbacks:
                        del self._subscribers[key]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _dispatch(self, payload: str) -> None:
        with self._lock:
            if payload == "q:*":
                targets = {
                    cb for key, cbs in self._subscribers.items() if key[:2] == "q:" for cb in cbs
                }
            else:
                targets = set(self._subscribers.get(payload, ()))
                if payload[:2] == "q:":
                    targets |= self._subscribers.get("q:*", set())
        for callback in targets:
            callback()

    def _wake_everyone(self) -> None:
        with self._lock:
            targets = {cb for cbs in self._subscribers.values() for cb in cbs}
        for callback in targets:
            callback()

    def _connect(self, alias: str) -> Any:
        wrapper = connections[alias]
        conn = wrapper.get_new_connection(wrapper.get_connection_params())
        conn.autocommit = True
        return conn

    def _probe(self, conn: Any) -> bool:
        """Send a notification as the application does; return whether ``conn`` receives it."""
        payload = f"p:{secrets.token_hex(8)}"
        sender = self._connect(self.alias)
        try:
            sender.execute("SELECT pg_notify(%s, %s)", [get_settings().NOTIFY_CHANNEL, payload])
        finally:
            sender.close()
        deadline = time.monotonic() + PROBE_TIMEOUT
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            for note in conn.notifies(timeout=min(left, 1.0)):
                if note.payload == payload:
                    return True
                self._dispatch(note.payload)
        return False

    def _unheard(self) -> None:
        global _probe_warned
        if not _probe_warned:
            _probe_warned = True
            logger.warning(
                "Notifications sent on database %r do not reach the LISTEN connection on %r "
                "(PgBouncer in transaction pooling mode?): waiting runs and idle workers poll "
                "every POLL_INTERVAL instead. Set DJANGO_DURABLE['LISTEN_DATABASE'] to a "
                "direct connection to the same database.",
                self.alias,
                self.listen_alias,
            )
        else:
            logger.debug("the LISTEN probe did not come back; polling")

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect(self.listen_alias)
                channel = get_settings().NOTIFY_CHANNEL
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                if not self._probe(conn):
                    self._unheard()
                    # Through a pooler this lands on some server session: best effort.
                    conn.execute("UNLISTEN *")
                    conn.close()
                    conn = None
                    self._stop.wait(PROBE_RETRY)
                    continue
                self.connected.set()
                backoff = 0.1
                # Anything sent while we were not listening is lost: everyone re-checks.
                self._wake_everyone()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=1.0):
                        self._dispatch(note.payload)
            except Exception as exc:
                self.connected.clear()
                logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # already broken
                        logger.debug("closing a broken LISTEN connection failed", exc_info=True)
        self.connected.clear()


_listeners: dict[str, Listener] = {}
_listeners_lock = threading.Lock()


def get_listener(alias: str | None = None) -> Listener | None:
    """Return this process's listener for the durable database (``None`` unless PostgreSQL)."""
    alias = alias or get_settings().DATABASE
    if connections[alias].vendor != "postgresql":
        return None
    with _listeners_lock:
        listener = _listeners.get(alias)
        if listener is None:
            listener = _listeners[alias] = Listener(alias)
        return listener


def stop_listeners() -> None:
    """Stop every listener of this process (tests, and workers on exit)."""
    with _listeners_lock:
        listeners = list(_listeners.values())
        _listeners.clear()
    for listener in listeners:
        listener.stop()


class Waiter:
    """Sleeps until one of ``keys`` is notified, or a poll is due; use it as a context.

    While the listener is connected a notification ends the sleep and the poll is a slow
    safety net (POLL_INTERVAL); otherwise (SQLite, listener down) it polls, backing off
    from 20 ms to POLL_INTERVAL.
    """

    def __init__(self, keys: Iterable[str], *, alias: str | None = None) -> None:
        self.keys = list(keys)
        self.poll = get_settings().POLL_INTERVAL
        self.listener = get_listener(alias)
        self.event = threading.Event()
        self.interval = min(0.02, self.poll)

    def __enter__(self) -> Self:
        if self.listener is not None:
            self.listener.subscribe(self.keys, self._notified)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.listener is not None:
            self.listener.unsubscribe(self.keys, self._notified)

    def _notified(self) -> None:  # called from the listener's thread
        self.event.set()

    def pause(self) -> float:
        """Return how long the next sleep may last."""
        listening = self.listener is not None and self.listener.connected.is_set()
        return self.poll if listening else self.interval

    def reset(self) -> None:
        """Poll quickly again: what is awaited has just moved (a stream got items)."""
        self.interval = min(0.02, self.poll)

    def sleep(self, limit: float | None = None) -> None:
        """Sleep until notified, the next poll, or ``limit`` seconds; then re-arm."""
        pause = self.pause()
        self.event.wait(pause if limit is None else min(pause, limit))
        self.event.clear()
        self.interval = min(self.interval * 1.5, self.poll)


class AsyncWaiter(Waiter):
    """Async twin of :class:`Waiter`: sleeps on the event loop, holding no thread."""

    def __init__(self, keys: Iterable[str], *, alias: str | None = None) -> None:
        super().__init__(keys, alias=alias)
        self.loop = asyncio.get_running_loop()
        self.async_event = asyncio.Event()

    def _notified(self) -> None:  # called from the listener's thread
        self.loop.call_soon_threadsafe(self.async_event.set)

    async def asleep(self, limit: float | None = None) -> None:
        """Sleep until notified, the next poll, or ``limit`` seconds; then re-arm."""
        pause = self.pause()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self.async_event.wait(), pause if limit is None else min(pause, limit)
            )
        self.async_event.clear()
        self.interval = min(self.interval * 1.5, self.poll)


def _remaining(deadline: float | None, timeout: float | None) -> float | None:
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"Gave up waiting after {timeout} seconds.")
    return remaining


def wait_until(
    check: Callable[[], T | None],
    *,
    keys: Iterable[str],
    timeout: float | None,
    alias: str | None = None,
) -> T:
    """Return ``check()`` once it is not ``None``, re-checking when notified or polling.

    Raises ``TimeoutError`` after ``timeout`` seconds (``None``: wait forever).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with Waiter(keys, alias=alias) as waiter:
        while True:
            result = check()
            if result is not None:
                return result
            waiter.sleep(_remaining(deadline, timeout))


async def await_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    keys: Iterable[str],
    timeout: float | None,
    alias: str | None = None,
) -> T:
    """Async twin of :func:`wait_until`: waits on the event loop, holding no thread."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with AsyncWaiter(keys, alias=alias) as waiter:
        while True:
            result = await check()
            if result is not None:
                return result
            await waiter.asleep(_remaining(deadline, timeout))
