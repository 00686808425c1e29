"""Finding a run from application code: its id, its row, its status, the database's time."""

from __future__ import annotations

import uuid

from ..core.conf import get_settings
from ..core.names import check_text
from ..core.statuses import RunStatus
from ..exceptions import RunNotFound
from ..models import Run
from ..store import claims


def db_alias() -> str:
    """Return the database alias of the durable tables."""
    return get_settings().DATABASE


def as_uuid(run_id: str | uuid.UUID) -> uuid.UUID:
    """Return ``run_id`` as a UUID; ``RunNotFound`` if it cannot be one."""
    try:
        return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        raise RunNotFound.of(run_id) from None


def get_row(run_id: str | uuid.UUID) -> Run:
    """Return the run's row, or raise ``RunNotFound``."""
    try:
        return Run.objects.using(db_alias()).get(pk=as_uuid(run_id))
    except Run.DoesNotExist:
        raise RunNotFound.of(run_id) from None


def run_ref(run_id: str | uuid.UUID | None, key: str | None) -> uuid.UUID:
    """Return the id of the run named by its id or (``key=``) by its idempotency key.

    Exactly one must be given (``TypeError`` otherwise); ``RunNotFound`` if no run has it.
    A key is looked up as it is stored: a run started over HTTP has ``api:<user pk>:<key>``.
    """
    if key is None:
        if run_id is None:
            raise TypeError(
                "Name the run: give its id, or key= (the idempotency key it was started with)."
            )
        return as_uuid(run_id)
    if run_id is not None:
        raise TypeError("Name the run by its id or by key=, not both.")
    if not isinstance(key, str) or not key or len(key) > 255:
        raise ValueError("key= must be an idempotency key: a string of 1 to 255 characters.")
    found = Run.objects.using(db_alias()).filter(idempotency_key=key).values_list("pk", flat=True)
    run = found.first()
    if run is None:
        raise RunNotFound.of_key(key)
    return run


def run_status(run: Run) -> str:
    """Return the run's status now (``Run.DoesNotExist`` if it was deleted)."""
    status = claims.run_status(run.pk, alias=db_alias())
    if status is None:
        raise Run.DoesNotExist(f"Run {run.pk} no longer exists.")
    return status


def run_finished(run: Run) -> bool:
    """Return whether ``run`` is in a terminal state now."""
    return run_status(run) in RunStatus.terminal()


def text_option(value: str | None, what: str) -> str:
    """Return an optional short text option ("" for None), or raise ``ValueError``."""
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise ValueError(f"{what} must be a string of at most 255 characters.")
    return check_text(value, what)
