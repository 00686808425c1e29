"""Finding the tasks: every installed app's ``tasks`` module, when a DurableBackend is set.

A worker executes the runs of the workflows its code registers, and a task registers its
workflow when its module is imported (when ``@task`` declares it). So that every process
knows the tasks without being told, ``DurableConfig.ready()`` imports each installed app's
``tasks`` module, as it imports its ``workflows`` module, if ``TASKS`` names a
``DurableBackend``. A task declared in another module is known where that module is
imported: import it from the app's ``tasks`` (or ``workflows``) module.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.utils.module_loading import autodiscover_modules, import_string

# The module looked for in every installed app, as Django's documentation names it.
TASKS_MODULE = "tasks"


def autodiscover() -> None:
    """Import every installed app's ``tasks`` module if a DurableBackend is configured."""
    if durable_aliases():
        autodiscover_modules(TASKS_MODULE)


def durable_aliases() -> list[str]:
    """Return the aliases of ``TASKS`` whose backend is a DurableBackend (or a subclass).

    Nothing of the Tasks framework is imported unless ``TASKS`` is set and names a backend
    class that imports; a backend that does not is left for the framework to report.
    """
    configured: dict[str, Any] = getattr(settings, "TASKS", None) or {}
    classes = {}
    for alias, params in configured.items():
        try:
            classes[alias] = import_string(str(params["BACKEND"]))
        except (ImportError, KeyError, TypeError):
            continue
    if not classes:
        return []
    durable = import_module(".backend", __package__).DurableBackend
    return [
        alias
        for alias, cls in classes.items()
        if isinstance(cls, type) and issubclass(cls, durable)
    ]
