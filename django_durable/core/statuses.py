"""The states of runs and recorded operations (importable before the app registry is ready)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class RunStatus(models.TextChoices):
    """Where a run is in its life; completed, failed and cancelled never change again."""

    # Waiting for a worker: new, released by a stopping worker, or woken from a wait.
    PENDING = "pending", _("Pending")
    # A worker holds its lease and executes it.
    RUNNING = "running", _("Running")
    # Suspended until a time (sleep, retry backoff) or until something wakes it.
    WAITING = "waiting", _("Waiting")
    # Returned a result.
    COMPLETED = "completed", _("Completed")
    # Raised an error that was not retried, or lost its workers too often.
    FAILED = "failed", _("Failed")
    # Stopped on request.
    CANCELLED = "cancelled", _("Cancelled")

    @classmethod
    def terminal(cls) -> frozenset[RunStatus]:
        """Return the statuses a run never leaves."""
        return frozenset({cls.COMPLETED, cls.FAILED, cls.CANCELLED})


class StepStatus(models.TextChoices):
    """The outcome recorded for a durable operation."""

    # Done; replay returns the recorded result.
    COMPLETED = "completed", _("Completed")
    # Failed for good; replay raises the recorded error.
    FAILED = "failed", _("Failed")
    # Failed and waits to be attempted again; ``attempts`` counts the tries so far.
    RETRYING = "retrying", _("Retrying")
    # A wait (event, message, sleep) that was reached but not over yet; ``result`` holds
    # its deadline (a sleep: its end, and when it began), so a timeout counts from the
    # first time the run got there.
    WAITING = "waiting", _("Waiting")
    # A step's body began and has not ended: it is running, or its worker was lost in it
    # (then the next execution runs it again, and ``executions`` counts both).
    RUNNING = "running", _("Running")

    @classmethod
    def unfinished(cls) -> frozenset[StepStatus]:
        """Return the statuses a record at a position may still move on from."""
        return frozenset({cls.RETRYING, cls.WAITING, cls.RUNNING})


class CallbackStatus(models.TextChoices):
    """Where a callback made by ``ctx.callback()`` stands; it leaves ``pending`` once."""

    # Made, and not settled yet: the outside system may complete or fail it.
    PENDING = "pending", _("Pending")
    # Completed with a value (``durable.complete_callback``).
    COMPLETED = "completed", _("Completed")
    # Failed with an error (``durable.fail_callback``).
    FAILED = "failed", _("Failed")
    # Its timeout passed before anyone settled it; the waiting run saw CallbackTimeout.
    EXPIRED = "expired", _("Expired")


class ParentClose(models.TextChoices):
    """What happens to an unfinished child when its parent run finishes."""

    # The child is cancelled (and its own children after it).
    CANCEL = "cancel", _("Cancel")
    # The child goes on alone.
    ABANDON = "abandon", _("Abandon")


class MissedTicks(models.TextChoices):
    """What a schedule does about ticks that passed while no worker looked at it."""

    # Start one run, for the latest tick that passed; skip the others.
    SKIP = "skip", _("Start the latest missed tick only")
    # Start a run for every tick that passed (up to a limit), oldest first.
    CATCH_UP = "catch_up", _("Start every missed tick")
