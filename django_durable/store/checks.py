"""System checks: a database django-durable can run on, configured for several workers."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Warning, register
from django.db import connections

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
