"""Talking SQL to PostgreSQL and SQLite: the dialect differences, statements, NOTIFY.

Everything dialect-specific about the hand-written SQL is here. On PostgreSQL statements
run as prepared statements and times come from the database's ``now()``; on SQLite (one
machine, one clock, one writer at a time) the time is the process's. Both are moved forward
by a test clock (``core.clock``), only while a test moves it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..core import clock
from ..core.conf import get_settings

NOW = object()  # sentinel: "the database's current time" as a column value


class Raw(str):
    """A column value that is an SQL expression of the run's own columns (ours, never input)."""


class Dialect:
    """Renders what differs between PostgreSQL and SQLite; parameters are named."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        if connection.vendor not in ("postgresql", "sqlite"):
            raise ImproperlyConfigured(
                f"django-durable supports PostgreSQL and SQLite, not {connection.vendor}."
            )
        self.pg = connection.vendor == "postgresql"

    def now(self, params: dict[str, Any]) -> str:
        """Return SQL for the current time (a parameter on SQLite).

        A test clock that was moved forward (``django_durable.testing``) moves it too.
        """
        if self.pg:
            if not clock.skipped():
                return "now()"
            params["skipped"] = clock.skipped()
            return "(now() + %(skipped)s * interval '1 second')"
        params.setdefault("now", self.store_datetime(clock.now()))
        return "%(now)s"

    def later(self, seconds: float, params: dict[str, Any], name: str = "later") -> str:
        """Return SQL for the current time plus ``seconds``."""
        if self.pg:
            params[name] = float(seconds) + clock.skipped()
            return f"now() + %({name})s * interval '1 second'"
        params[name] = self.store_datetime(clock.now() + timedelta(seconds=seconds))
        return f"%({name})s"

    def store_uuid(self, value: uuid.UUID) -> Any:
        """Return a UUID as the backend stores it."""
        return value if self.pg else value.hex

    @staticmethod
    def read_uuid(value: Any) -> uuid.UUID:
        """Return a UUID read from a raw row."""
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))

    def store_datetime(self, value: datetime | None) -> Any:
        """Return a datetime as the backend stores it."""
        if value is None or self.pg:
            return value
        return self.connection.ops.adapt_datetimefield_value(value)

    @staticmethod
    def read_datetime(value: Any) -> datetime | None:
        """Return an aware datetime read from a raw row (SQLite stores naive UTC)."""
        if value is None:
            return None
        parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
        if parsed is not None and timezone.is_naive(parsed):
            parsed = parsed.replace(tzinfo=UTC)
        return parsed

    def param(self, name: str, sql_type: str | None = None) -> str:
        """Return a named placeholder, cast to ``sql_type`` on PostgreSQL."""
        return f"%({name})s::{sql_type}" if self.pg and sql_type else f"%({name})s"

    def in_list(self, prefix: str, values: Sequence[Any], params: dict[str, Any]) -> str:
        """Return ``%(p0)s, %(p1)s, ...`` for an ``IN (...)`` list, filling ``params``."""
        names = []
        for index, value in enumerate(values):
            params[f"{prefix}{index}"] = value
            names.append(f"%({prefix}{index})s")
        return ", ".join(names)

    def any_of(
        self,
        column: str,
        prefix: str,
        values: Sequence[str],
        params: dict[str, Any],
        *,
        negate: bool = False,
    ) -> str:
        """Return SQL for ``column`` being (with ``negate``: not being) one of ``values``.

        One array parameter on PostgreSQL, so that the statement's text (and its prepared
        plan) does not change with the number of values; an ``IN`` list on SQLite.
        """
        if not values:
            return "1 = 1" if negate else "1 = 0"
        if self.pg:
            params[prefix] = list(values)
            test = f"{column} = ANY(%({prefix})s::text[])"
            return f"NOT ({test})" if negate else test
        return f"{column} {'NOT IN' if negate else 'IN'} ({self.in_list(prefix, values, params)})"


def dialect(alias: str | None = None) -> Dialect:
    """Return the dialect of the durable database connection."""
    return Dialect(connections[alias or get_settings().DATABASE])


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """What a statement returned."""

    rows: list[tuple[Any, ...]]
    rowcount: int


# psycopg prepares a statement after this many executions, or at once when asked to.
ONLY_WHEN_ASKED = 2**31 - 1


# A writer waits this long for a lock another transaction holds, where the lock guards
# something it can leave for its next round (a queue's claim, a lease a request has locked):
# a holder that stalls (a frozen process, a long request) must not stall it in turn.
LOCK_WAIT_MS = 250
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for lock_timeout


def lock_not_available(exc: BaseException) -> bool:
    """Return whether a database error is PostgreSQL's ``lock_timeout`` running out."""
    return getattr(exc.__cause__, "sqlstate", None) == LOCK_NOT_AVAILABLE


def execute(d: Dialect, sql: str, params: dict[str, Any]) -> Result:
    """Execute ``sql``; on PostgreSQL as a server-side prepared statement.

    Planning these statements costs more than executing them (measured: a fenced
    checkpoint INSERT takes 0.44 ms re-planned, 0.24 ms prepared), and Django's cursors
    never prepare: they bind parameters on the client (``psycopg.ClientCursor``, whose
    ``prepare=True`` does nothing). So the statement runs through a ``psycopg.Cursor``
    (server-side binding) on Django's connection, inside its transaction, with errors
    translated to Django's; it bypasses Django's query log.
    """
    if d.pg and get_settings().PREPARE_STATEMENTS:
        d.connection.ensure_connection()
        raw = d.connection.connection
        if raw.prepare_threshold is None:
            # Django opens connections with psycopg's preparing off (prepare_threshold
            # None), and then even prepare=True prepares nothing. A threshold no statement
            # reaches turns it on for explicit prepare=True only: this function's.
            raw.prepare_threshold = ONLY_WHEN_ASKED
        with d.connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
            cursor.execute(sql, params, prepare=True)
            rows = cursor.fetchall() if cursor.description else []
            return Result(list(rows), cursor.rowcount)
    with d.connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
        return Result(list(rows), cursor.rowcount)


def notifying(d: Dialect, returning_sql: str, payload_sql: str, params: dict[str, Any]) -> str:
    """Wrap ``UPDATE ... RETURNING`` so PostgreSQL notifies once per row, on commit."""
    params["channel"] = get_settings().NOTIFY_CHANNEL
    return (
        f"WITH changed AS ({returning_sql}) "
        f"SELECT pg_notify(%(channel)s, {payload_sql}) FROM changed"
    )


def notify(payloads: Iterable[str], *, alias: str | None = None) -> None:
    """Send NOTIFY payloads on PostgreSQL (delivered when the transaction commits)."""
    d = dialect(alias)
    unique = sorted(set(payloads))
    if not d.pg or not unique:
        return
    params: dict[str, Any] = {"channel": get_settings().NOTIFY_CHANNEL}
    values = d.in_list("p", unique, params)
    sql = f"SELECT pg_notify(%(channel)s, p) FROM unnest(ARRAY[{values}]::text[]) AS p"
    execute(d, sql, params)
