"""System checks: a database django-durable can run on, configured for several workers."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import DEFAULT_DB_ALIAS, connections, router

from ..core.conf import get_settings


@register("django_durable")
def check_database(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check the durable database is PostgreSQL, or SQLite set up for concurrent writers."""
    alias = get_settings().DATABASE
    if alias not in connections:
        return [
            Error(
                f"DJANGO_DURABLE['DATABASE'] is {alias!r}, which is not in DATABASES.",
                id="django_durable.E001",
            )
        ]
    wrapper = connections[alias]
    if wrapper.vendor not in ("postgresql", "sqlite"):
        return [
            Error(
                f"django-durable runs on PostgreSQL or SQLite, not {wrapper.vendor}.",
                id="django_durable.E002",
            )
        ]
    listen = get_settings().LISTEN_DATABASE
    if listen is not None and (
        listen not in connections or connections[listen].vendor != wrapper.vendor
    ):
        return [
            Error(
                f"DJANGO_DURABLE['LISTEN_DATABASE'] is {listen!r}, which is not a "
                f"{wrapper.vendor} database in DATABASES.",
                hint="Name a DATABASES entry that connects directly (not through PgBouncer) "
                f"to the database of {alias!r}; give it TEST = {{'MIRROR': {alias!r}}}.",
                id="django_durable.E005",
            )
        ]
    options = wrapper.settings_dict.get("OPTIONS", {})
    if (
        wrapper.vendor == "sqlite"
        and str(options.get("transaction_mode", "")).upper() != "IMMEDIATE"
    ):
        return [
            Warning(
                "SQLite without OPTIONS['transaction_mode'] = 'IMMEDIATE': atomic steps in "
                "concurrent workers can fail with 'database is locked'.",
                hint="Set OPTIONS = {'transaction_mode': 'IMMEDIATE', 'timeout': 20, "
                "'init_command': 'PRAGMA journal_mode=WAL;'} (see the deployment docs).",
                id="django_durable.W001",
            )
        ]
    return []


@register("django_durable")
def check_router(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check Django's routers send the models to a durable database that is not "default"."""
    alias = get_settings().DATABASE
    if alias == DEFAULT_DB_ALIAS or alias not in connections:
        return []
    routed = router.db_for_write(apps.get_model("django_durable", "Run"))
    if routed == alias:
        return []
    return [
        Warning(
            f"DJANGO_DURABLE['DATABASE'] is {alias!r}, but Django's database routers send "
            f"django-durable's models to {routed!r}: migrate creates their tables there, "
            "and code that does not name the database (Run.objects, a user's durable_runs, "
            "a run's owner) looks in the wrong one.",
            hint="Add 'django_durable.routers.DurableRouter' to DATABASE_ROUTERS.",
            id="django_durable.W002",
        )
    ]
