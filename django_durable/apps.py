"""The Django app: registers workflows from every installed app's ``workflows`` module."""

from __future__ import annotations

from django.apps import AppConfig


class DurableConfig(AppConfig):
    """django-durable's app configuration."""

    name = "django_durable"
    label = "django_durable"
    verbose_name = "Durable workflows"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .registry import autodiscover

        autodiscover()
