"""django-durable's errors as HTTP errors: mapped once, here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from rest_framework import exceptions, status
from rest_framework.settings import api_settings

from ..exceptions import (
    DurableError,
    PayloadTooLarge,
    RunNotFound,
    SerializationError,
    WorkflowNotFound,
)


class UnknownWorkflow(exceptions.APIException):
    """No workflow is registered under that name."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "No workflow is registered under that name."
    default_code = "unknown_workflow"


class InvalidPayload(exceptions.APIException):
    """A value cannot be stored as JSON."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The value cannot be stored as JSON."
    default_code = "invalid_payload"


class PayloadTooLargeError(exceptions.APIException):
    """The request body or a value in it is over the size limit."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The payload is too large."
    default_code = "payload_too_large"


class RunNotFoundError(exceptions.NotFound):
    """No run with that id is visible to this user."""

    default_detail = "No run with that id."
    default_code = "run_not_found"


class InvalidRequest(exceptions.APIException):
    """The request cannot be carried out as asked (for example a key used by another run)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request cannot be carried out."
    default_code = "invalid_request"


class ValueNotFound(exceptions.NotFound):
    """The run has not published a value under that key."""

    default_detail = "The run has no value under that key."
    default_code = "value_not_found"


class RunFinished(exceptions.APIException):
    """The run has already finished: there is nothing to cancel."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The run has already finished."
    default_code = "run_finished"


class NotRetryable(exceptions.APIException):
    """Only failed or cancelled runs can be retried."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Only failed or cancelled runs can be retried."
    default_code = "not_retryable"


def to_api_exception(exc: Exception) -> Exception:
    """Return the API exception for a django-durable error (others pass through)."""
    if isinstance(exc, PayloadTooLarge):
        return PayloadTooLargeError(str(exc))
    if isinstance(exc, SerializationError):
        return InvalidPayload(str(exc))
    if isinstance(exc, WorkflowNotFound):
        return UnknownWorkflow()  # the Python message lists every workflow: not for clients
    if isinstance(exc, RunNotFound):
        return RunNotFoundError()
    if isinstance(exc, DurableError):
        return InvalidRequest(str(exc))
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """Map django-durable's errors, then hand over to the project's handler."""
    handler = cast(Callable[[Exception, dict[str, Any]], Any], api_settings.EXCEPTION_HANDLER)
    exc = to_api_exception(exc)
    response = handler(exc, context)
    # A machine-readable code next to a single message: clients branch on it.
    if response is not None and isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        if isinstance(response.data, dict) and "detail" in response.data and isinstance(codes, str):
            response.data.setdefault("code", codes)
    return response
