"""A database router that keeps django-durable's tables in ``DJANGO_DURABLE["DATABASE"]``.

django-durable names its database in every query of its own (``.using(DATABASE)``). The
router is for what Django decides without asking it: where ``migrate`` creates the tables,
where code outside django-durable reads and writes the models (``Run.objects``, a user's
``durable_runs``), and where a run's owner is read from (the user's database, not the
run's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import router
from django.db.models import Model

from .core.conf import get_settings

APP_LABEL = "django_durable"


class DurableRouter:
    """Route django-durable's models to ``DJANGO_DURABLE["DATABASE"]``, and no others there.

    Put it in ``DATABASE_ROUTERS``: alone, or after a router of yours that places other
    apps in the durable database on purpose. It keeps every other app's tables out of the
    durable database (unless that is ``"default"``) and says nothing about where they go
    elsewhere.
    """

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        """Return the durable database for django-durable's models."""
        return self._route(model, hints, router.db_for_read)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        """Return the durable database for django-durable's models."""
        return self._route(model, hints, router.db_for_write)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        """Allow relations between durable rows, and a run's owner (a user of any database)."""
        labels = {obj1._meta.app_label, obj2._meta.app_label}
        if APP_LABEL not in labels:
            return None
        other = obj2 if obj1._meta.app_label == APP_LABEL else obj1
        if other._meta.app_label == APP_LABEL or _is_user_model(other):
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        """Create django-durable's tables in the durable database only, and only theirs."""
        durable = get_settings().DATABASE
        if app_label == APP_LABEL:
            return db == durable
        if db == durable and durable != "default":
            return False
        return None

    def _route(
        self, model: type[Model], hints: dict[str, Any], ask: Callable[..., str]
    ) -> str | None:
        if model._meta.app_label == APP_LABEL:
            return get_settings().DATABASE
        instance = hints.get("instance")
        if instance is not None and instance._meta.app_label == APP_LABEL:
            # A run's owner: Django would look in the run's database. Ask the routers
            # where the model lives, without the run (this router then says nothing).
            return ask(model)
        return None


def _is_user_model(obj: Model) -> bool:
    return obj._meta.label_lower == settings.AUTH_USER_MODEL.lower()
