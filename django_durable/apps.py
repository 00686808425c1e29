"""The Django app: finds the workflows, registers the checks, and joins the layers.

``ready()`` is the top of the package: it imports the workflows module of every installed
app (and its tasks module, when ``TASKS`` names a DurableBackend), and plugs the client's
start functions into the declarations, so that ``fulfill.start(...)`` works without the
declarations importing the client. It also connects the receiver that clears the owner of
a deleted user's runs (``client/owners.py``).
"""

from __future__ import annotations

from django.apps import AppConfig


class DurableConfig(AppConfig):
    """django-durable's app configuration."""

    name = "django_durable"
    label = "django_durable"
    verbose_name = "Durable workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks, install the client's starters, find workflows and tasks."""
        # Imported here, not at the top: they need the models, which load after this module.
        from .api import checks as api_checks  # noqa: F401  (registers the API's checks)
        from .client import owners
        from .client.starting import astart_run, start_run
        from .declarations import starting
        from .declarations.registry import autodiscover
        from .store import checks  # noqa: F401  (registers the system checks)
        from .tasks import discovery

        starting.install(start_run, astart_run)
        owners.connect()
        autodiscover()
        discovery.autodiscover()
