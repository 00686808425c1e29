"""The ``DJANGO_DURABLE`` settings dict, read once into a frozen dataclass."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from standardwebhooks import Webhook

from .names import check_name
from .queue_limits import QueueLimits, parse_limits
from .retry import RetryPolicy

SETTING_NAME = "DJANGO_DURABLE"
# A webhook source is one URL path segment (webhooks/<source>/): no "/", no "." or "..".
_WEBHOOK_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


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
    # Seconds a ready run waits while no live worker registers its workflow (a deploy that
    # has not reached the workers yet) before it fails; ``None`` waits for ever.
    UNKNOWN_WORKFLOW_TIMEOUT: float | None = 3600.0
    # Largest JSON document stored for an input, result, error or payload, in bytes.
    MAX_PAYLOAD_BYTES: int = 1024 * 1024
    # Deepest nesting of lists and objects in a stored JSON document (and an API body):
    # deeper ones are refused before anything is stored, so every page can show them.
    MAX_JSON_DEPTH: int = 64
    # Seconds a worker waits for in-flight steps after SIGTERM before releasing them.
    SHUTDOWN_TIMEOUT: float = 30.0
    # Runs one worker process executes at once when --concurrency is not given.
    WORKER_CONCURRENCY: int = 4
    # Keyword arguments of the RetryPolicy used by steps that name none.
    DEFAULT_STEP_RETRY: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # PostgreSQL NOTIFY channel shared by workers and waiting clients.
    NOTIFY_CHANNEL: str = "django_durable"
    # Database alias the LISTEN connection uses; ``None`` means DATABASE. Behind PgBouncer
    # in transaction pooling, a direct connection to the same database (LISTEN needs a
    # session of its own).
    LISTEN_DATABASE: str | None = None
    # Seconds a step's body runs before the worker records that it began (its execution
    # count, the "running" record). A body that ends sooner is recorded once, by its
    # checkpoint: one write per step instead of two. 0: record every start before the body.
    RECORD_STEP_START_AFTER: float = 0.5
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
    # Signed inbound webhooks, by source: {"shop": {"secret": "whsec_...", "event":
    # "shop/order"}}; "secret" may be a list (rotation). Served at webhooks/<source>/.
    WEBHOOKS: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def listen_alias(self) -> str:
        """Return the database alias of the LISTEN connection."""
        return self.LISTEN_DATABASE or self.DATABASE

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
            "MAX_JSON_DEPTH",
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
        if self.RECORD_STEP_START_AFTER < 0:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['RECORD_STEP_START_AFTER'] cannot be negative (0 records "
                "every start before the body)."
            )
        _seconds_or_none(self.UNKNOWN_WORKFLOW_TIMEOUT, "UNKNOWN_WORKFLOW_TIMEOUT")
        _seconds_or_none(self.RETENTION, "RETENTION")
        if not isinstance(self.DEFAULT_STEP_RETRY, Mapping):
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['DEFAULT_STEP_RETRY'] must be a dict of RetryPolicy arguments."
            )
        if not isinstance(self.QUEUES, Mapping):
            raise ImproperlyConfigured(f"{SETTING_NAME}['QUEUES'] must be a dict of queues.")
        for name, options in self.QUEUES.items():
            parse_limits(name, options)
        if not isinstance(self.WEBHOOKS, Mapping):
            raise ImproperlyConfigured(f"{SETTING_NAME}['WEBHOOKS'] must be a dict of sources.")
        for name, options in self.WEBHOOKS.items():
            parse_webhook(name, options)
        try:
            RetryPolicy(**self.DEFAULT_STEP_RETRY)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(
                f"{SETTING_NAME}['DEFAULT_STEP_RETRY'] is not a valid RetryPolicy: {exc}"
            ) from exc


def _seconds_or_none(value: Any, name: str) -> None:
    """Refuse a value that is neither a number of seconds greater than 0 nor None."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
    ):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}[{name!r}] must be a number of seconds greater than 0, or None."
        )


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookSource:
    """One source of ``WEBHOOKS``: the secrets its signatures may use, the event it emits."""

    name: str
    secrets: tuple[str, ...]
    event: str


def parse_webhook(name: str, options: Mapping[str, Any]) -> WebhookSource:
    """Validate one webhook source's options (``ImproperlyConfigured`` if wrong)."""
    where = f"{SETTING_NAME}['WEBHOOKS'][{name!r}]"
    if not isinstance(name, str) or not _WEBHOOK_SOURCE.match(name):
        raise ImproperlyConfigured(
            f"{where}: a source name is 1 to 100 letters, digits, '-', '_' or '.', starting "
            "with a letter or a digit (it is a segment of the URL path)."
        )
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{where} must be a dict with 'secret' and 'event'.")
    unknown = sorted(map(str, set(options) - {"secret", "event"}))
    if unknown:
        raise ImproperlyConfigured(f"{where} has unknown keys: {', '.join(unknown)}.")
    missing = [key for key in ("secret", "event") if key not in options]
    if missing:
        raise ImproperlyConfigured(f"{where} lacks {' and '.join(repr(m) for m in missing)}.")
    secret = options["secret"]
    secrets = (secret,) if isinstance(secret, str) else secret
    if not isinstance(secrets, list | tuple) or not secrets:
        raise ImproperlyConfigured(f"{where}['secret'] must be a string or a list of strings.")
    for position, one in enumerate(secrets):
        shown = "" if isinstance(secret, str) else f"[{position}]"
        _check_secret(one, f"{where}['secret']{shown}")
    try:
        event = check_name(options["event"], "event")
    except ValueError as exc:
        raise ImproperlyConfigured(f"{where}['event']: {exc}") from exc
    return WebhookSource(name=name, secrets=tuple(secrets), event=event)


def _check_secret(secret: Any, where: str) -> None:
    # The message never shows the secret.
    if not isinstance(secret, str) or not secret:
        raise ImproperlyConfigured(f"{where} must be a non-empty string.")
    try:
        Webhook(secret)
    except Exception as exc:  # binascii.Error, EmptyWebhookSecretError: whatever it refuses
        raise ImproperlyConfigured(
            f"{where} is not a Standard Webhooks secret: base64, optionally after 'whsec_'."
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


def queue_limits(queue: str) -> QueueLimits | None:
    """Return the limits of ``queue`` in ``QUEUES``, if it has any."""
    options = get_settings().QUEUES.get(queue)
    return None if options is None else parse_limits(queue, options)


def webhook_source(name: str) -> WebhookSource | None:
    """Return the source ``name`` of ``WEBHOOKS``, if it is configured."""
    options = get_settings().WEBHOOKS.get(name)
    return None if options is None else parse_webhook(name, options)


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        get_settings.cache_clear()


setting_changed.connect(_reset)
