"""Django's Tasks framework on django-durable: ``django_durable.tasks.DurableBackend``.

``TASKS = {"default": {"BACKEND": "django_durable.tasks.DurableBackend"}}`` runs ``@task``
functions (``django.tasks`` on Django 6.0, the ``django-tasks`` backport on Django 5.2) as
durable runs. The backend loads on first use: importing this package needs neither.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import DurableBackend

__all__ = ["DurableBackend"]


def __getattr__(name: str) -> Any:
    # The backend imports the Tasks framework, an optional dependency: loaded on first use.
    if name != "DurableBackend":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return import_module(".backend", __name__).DurableBackend
