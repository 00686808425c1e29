"""Every exception django-durable raises; a class's docstring is its default message."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class DurableError(Exception):
    """A django-durable operation failed."""

    def __init__(self, message: str | None = None, *args: Any) -> None:
        super().__init__(message or (self.__doc__ or "").strip(), *args)


class WorkflowNotFound(DurableError, LookupError):
    """No workflow is registered under that name."""


class RunNotFound(DurableError, LookupError):
    """No run has that id."""

    @classmethod
    def of(cls, run_id: object) -> RunNotFound:
        """Return the error for ``run_id``, worded the same wherever a run is looked up."""
        return cls(f"No run has the id {str(run_id)!r}.")

    @classmethod
    def of_key(cls, key: str) -> RunNotFound:
        """Return the error for a run looked up by its idempotency key."""
        return cls(f"No run was started with the idempotency key {key!r}.")


class RunNotRetryable(DurableError):
    """Only a failed or cancelled run can be retried."""


class RunNotForkable(DurableError):
    """The run cannot be forked from that step.

    ``reason`` says why: ``"unfinished"`` (the run is still pending, running or waiting: only
    a completed, failed or cancelled run can be forked) or ``"from_step"`` (the operations
    before that step cannot all be copied: there are fewer, or one of them has not finished).
    """

    def __init__(self, message: str | None = None, *, reason: str = "from_step") -> None:
        super().__init__(message)
        self.reason = reason


class TokenRefused(DurableError):
    """The run access token does not allow this.

    ``reason`` says why: ``"invalid"`` (no such token), ``"expired"``, ``"revoked"`` or
    ``"not_granted"`` (it does not carry the ability asked for).
    """

    def __init__(self, message: str | None = None, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class RunFinished(DurableError):
    """The run has finished: a message sent to it would never be taken, so none is stored."""


class FlowKeyError(DurableError, ValueError):
    """A workflow's flow key function (concurrency_key=, singleton_key=, debounce_key=)
    raised or returned no key: no run was started."""


class NothingToWake(DurableError):
    """The run is not waiting for a time: it is not waiting, or waits with no time limit."""


class SerializationError(DurableError, TypeError):
    """A value cannot be stored as JSON."""


class PayloadTooLarge(SerializationError, ValueError):
    """A value is larger than DJANGO_DURABLE['MAX_PAYLOAD_BYTES']."""


class NonDeterministicWorkflow(DurableError):
    """The workflow's code no longer matches the operations its run recorded."""

    def __init__(
        self,
        message: str | None = None,
        *,
        position: int | None = None,
        recorded: str | None = None,
        new: str | None = None,
    ) -> None:
        super().__init__(message)
        self.position = position
        self.recorded = recorded
        self.new = new


class RetryableError(DurableError):
    """A step failed in a way that is worth retrying."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(DurableError):
    """A step or workflow failed in a way that retrying cannot fix."""


class StepFailed(DurableError):
    """A step failed and its exception cannot be raised again as its own type."""

    def __init__(self, message: str | None = None, *, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error or {}


class WorkflowFailed(DurableError):
    """The run failed."""

    def __init__(
        self,
        message: str | None = None,
        *,
        run_id: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.error: dict[str, Any] = error or {}

    @property
    def error_type(self) -> str:
        """Return the dotted name of the exception that failed the run."""
        return str(self.error.get("type", ""))

    @property
    def error_message(self) -> str:
        """Return the message of the exception that failed the run."""
        return str(self.error.get("message", ""))

    @property
    def traceback(self) -> str:
        """Return the formatted traceback recorded when the run failed."""
        return str(self.error.get("traceback", ""))


class EventTimeout(DurableError, TimeoutError):
    """No event arrived before the wait's timeout."""


class StepTimeout(DurableError, TimeoutError):
    """A step's attempt ran past the step's timeout; the attempt failed."""


class EventDataInvalid(DurableError, ValueError):
    """An event's data does not match the model the workflow expects."""


class WorkflowCancelled(WorkflowFailed):
    """The run was cancelled."""


class ChildWorkflowFailed(WorkflowFailed):
    """A child run failed or was cancelled; ``run_id`` and ``error`` are the child's."""


class WorkflowTimedOut(DurableError, TimeoutError):
    """The run passed the deadline set by its workflow's ``timeout``."""


class CallbackNotFound(DurableError, LookupError):
    """No callback has that id."""

    @classmethod
    def of(cls, callback_id: object) -> CallbackNotFound:
        """Return the error for ``callback_id``, worded the same wherever one is looked up."""
        return cls(f"No callback has the id {str(callback_id)!r}.")


class CallbackClosed(DurableError):
    """The callback cannot be completed or failed any more: it is settled once.

    ``reason`` says why: ``"completed"`` or ``"failed"`` (it was settled before),
    ``"expired"`` (its timeout passed) or ``"run_finished"`` (its run ended without it).
    """

    def __init__(self, message: str | None = None, *, reason: str = "completed") -> None:
        super().__init__(message)
        self.reason = reason


class CallbackFailed(DurableError):
    """The outside system failed the callback; ``details`` is what it sent with the error."""

    def __init__(
        self, message: str | None = None, *, callback_id: str = "", details: Any = None
    ) -> None:
        super().__init__(message)
        self.callback_id = callback_id
        self.details = details


class CallbackTimeout(DurableError, TimeoutError):
    """The callback was not completed before its timeout."""


class AbandonRun(BaseException):
    """This worker cannot go on with the run (its database write failed); it gives it up.

    A ``BaseException`` so that a workflow's ``except Exception`` cannot swallow it.
    """


class CheckpointRejected(AbandonRun):
    """The database refused a record (it would refuse it again): the run fails with it."""

    def __init__(self, message: str, *, error: BaseException) -> None:
        super().__init__(message)
        self.error = error


class LeaseLost(AbandonRun):
    """This worker no longer holds the run's lease; another worker owns it now."""


class SuspendRun(BaseException):
    """The run waits for something; the engine stores the wait and frees the worker.

    A ``BaseException`` so that a workflow's ``except Exception`` cannot swallow it.
    ``wake_at`` is when the run becomes runnable again (``None``: only when woken);
    ``release`` hands the run straight back to the queue (worker shutting down).
    ``wake_on`` names what wakes it sooner (``e:`` event, ``m:`` message, ``c:`` child
    run, ``cb:`` callback); ``floor`` is the newest id of that kind it has already seen;
    ``shielded`` waits inside ``ctx.shield()``, where a cancellation does not wake it.
    ``keys`` are the ``(wake_on, floor)`` pairs of a wait for the first of several things
    (``ctx.first_of``), whose ``wake_on`` is then ``f:any``.
    """

    def __init__(
        self,
        reason: str,
        *,
        wake_at: datetime | None = None,
        release: bool = False,
        wake_on: str | None = None,
        floor: int = 0,
        shielded: bool = False,
        keys: tuple[tuple[str, int], ...] = (),
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wake_at = wake_at
        self.release = release
        # Suspended inside ctx.shield(): a pending cancellation must not cut the wait short.
        self.shielded = shielded
        # "e:<event name>" or "m:<topic>": what wakes the run before ``wake_at``; for
        # events, only an emission newer than ``floor`` (an event id) counts.
        self.wake_on = wake_on
        self.floor = floor
        self.keys = keys


class Cancelled(BaseException):
    """The run was cancelled.

    Raised inside a cancelled run at its next durable operation (a step that is running is
    not interrupted). Catch it only to clean up, inside ``with ctx.shield():``, and let it
    propagate: the run then ends ``cancelled``. A ``BaseException``, so that a workflow's
    ``except Exception`` does not swallow it.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "The run was cancelled.")
        self.reason = reason
