"""The ``DJANGO_DURABLE`` settings dict, read once into a frozen dataclass."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .retry_policy import RetryPolicy

SETTING_NAME = "DJANGO_DURABLE"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DurableSettings:
    """Every key of ``DJANGO_DURABLE``; the reference documents each one."""

    # Database alias that holds the durable tables and runs every worker query.
    DATABASE: str = "default"
    # Queue used when a workflow or a start names none.
    DEFAULT_QUEUE: str = "default"
    # Seconds an idle worker waits before looking for work again (NOTIFY wakes it sooner).
    POLL_INTERVAL: float = 1.0
    # Seconds a claim stays valid without a heartbeat; after that any worker may take over.
    LEASE_SECONDS: float = 30.0
    # Seconds between lease renewals; ``None`` means a third of LEASE_SECONDS.
    HEARTBEAT_INTERVAL: float | None = None
    # Lease expiries in a row (workers lost mid-run) before the run is failed.
    MAX_RECOVERIES: int = 5
    # Largest JSON document stored for an input, result, error or payload, in bytes.
    MAX_PAYLOAD_BYTES: int = 1024 * 1024
    # Seconds a worker waits for in-flight steps after SIGTERM before releasing them.
    SHUTDOWN_TIMEOUT: float = 30.0
    # Runs one worker process executes at once when --concurrency is not given.
    WORKER_CONCURRENCY: int = 4
    # Keyword arguments of the RetryPolicy used by steps that name none.
    DEFAULT_STEP_RETRY: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # PostgreSQL NOTIFY channel shared by workers and waiting clients.
    NOTIFY_CHANNEL: str = "django_durable"
    # PostgreSQL: run the worker's statements as prepared statements (turn off behind
    # PgBouncer older than 1.21 in transaction pooling mode).
    PREPARE_STATEMENTS: bool = True
    # Limits per queue, across every worker: {"emails": {"concurrency": 5,
    # "rate_limit": "100/m"}}. A queue not named here has none.
    QUEUES: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    # How deep child runs may nest (a top-level run is depth 0).
    MAX_CHILD_DEPTH: int = 10
    # Dotted path of the class that decides who may see and operate runs over HTTP.
    API_ACCESS_POLICY: str = "django_durable.api.access.AccessPolicy"
    # Longest wait, in seconds, a long-polling HTTP request (values) may ask for.
    API_MAX_WAIT: float = 30.0
    # Seconds a Server-Sent Events response lasts before it ends and the browser
    # reconnects (resuming from Last-Event-ID): it bounds how long one holds a thread.
    API_STREAM_SECONDS: float = 300.0
    # Module name imported from every installed app to register workflows.
    AUTODISCOVER_MODULE: str = "workflows"
    # Seconds after which ``manage.py durable prune`` deletes finished runs when it is given
    # no --older-than; ``None`` keeps them until pruned explicitly.
    RETENTION: float | None = None

    @property
    def heartbeat_interval(self) -> float:
        """Return the seconds between lease renewals."""
        if self.HEARTBEAT_INTERVAL is not None:
            return self.HEARTBEAT_INTERVAL
        return self.LEASE_SECONDS / 3

    def __post_init__(self) -> None:
        positive = (
            "POLL_INTERVAL",
            "LEASE_SECONDS",
            "MAX_PAYLOAD_BYTES",
            "WORKER_CONCURRENCY",
            "API_MAX_WAIT",
            "API_STREAM_SECONDS",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ImproperlyConfigured(f"{SETTING_NAME}[{name!r}] must be greater than 0.")
        if self.HEARTBEAT_INTERVAL is not None and not (
            0 < self.HEARTBEAT_INTERVAL < self.LEASE_SECONDS
        ):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['HEARTBEAT_INTERVAL'] must be between 0 and LEASE_SECONDS."
            )
        if not isinstance(self.MAX_CHILD_DEPTH, int) or self.MAX_CHILD_DEPTH < 0:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['MAX_CHILD_DEPTH'] must be a whole number, 0 or more."
            )
        if self.MAX_RECOVERIES < 0 or self.SHUTDOWN_TIMEOUT < 0:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['MAX_RECOVERIES'] and ['SHUTDOWN_TIMEOUT'] cannot be negative."
            )
        retention = self.RETENTION
        if retention is not None and (
            isinstance(retention, bool) or not isinstance(retention, int | float) or retention <= 0
        ):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['RETENTION'] must be a number of seconds greater than 0, or None."
            )
        if not isinstance(self.DEFAULT_STEP_RETRY, Mapping):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['DEFAULT_STEP_RETRY'] must be a dict of RetryPolicy arguments."
            )
        if not isinstance(self.QUEUES, Mapping):
            raise ImproperlyConfigured(f"{SETTING_NAME}['QUEUES'] must be a dict of queues.")
        from .queues import parse_limits  # it reads these settings: imported late

        for name, options in self.QUEUES.items():
            parse_limits(name, options)
        try:
            RetryPolicy(**self.DEFAULT_STEP_RETRY)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['DEFAULT_STEP_RETRY'] is not a valid RetryPolicy: {exc}"
            ) from exc


_KNOWN = frozenset(f.name for f in dataclasses.fields(DurableSettings))


@lru_cache(maxsize=1)
def get_settings() -> DurableSettings:
    """Return the validated ``DJANGO_DURABLE`` settings."""
    raw = getattr(django_settings, SETTING_NAME, None) or {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict.")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ImproperlyConfigured(
            f"Unknown {SETTING_NAME} key(s): {', '.join(unknown)}. "
            f"Known keys: {', '.join(sorted(_KNOWN))}."
        )
    try:
        return DurableSettings(**raw)
    except TypeError as exc:  # a value of the wrong type in a comparison
        raise ImproperlyConfigured(f"Invalid {SETTING_NAME}: {exc}") from exc


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        get_settings.cache_clear()


setting_changed.connect(_reset)
