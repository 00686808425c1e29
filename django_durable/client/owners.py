"""A deleted user's runs lose their owner, in whichever database they are.

``Run.owner`` has no database constraint, and Django's deletion does not follow it
(``on_delete=DO_NOTHING``): the user model may live in another database than the durable
tables (``DJANGO_DURABLE["DATABASE"]``), and Django looks for related rows only in the
database of the row it deletes. This receiver does what ``SET_NULL`` did, in the durable
database: in the deletion's own transaction when both are one database.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_delete

from ..models import Run
from .lookup import db_alias


def forget_owner(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Clear the owner of every run of ``instance``, a user that was just deleted."""
    Run.objects.using(db_alias()).filter(owner_id=instance.pk).update(owner=None)


def connect() -> None:
    """Clear the owner of a deleted user's runs (called from the app's ``ready()``)."""
    post_delete.connect(
        forget_owner, sender=settings.AUTH_USER_MODEL, dispatch_uid="django_durable.owners"
    )
