"""django-durable's errors as HTTP errors: mapped once, here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.settings import api_settings

from ..exceptions import (
    DurableError,
    PayloadTooLarge,
    RunFinished,
    RunNotForkable,
    RunNotFound,
    SerializationError,
    TokenRefused,
    WorkflowNotFound,
)


class UnknownWorkflow(exceptions.APIException):
    """A run names a workflow this process has not registered (for instance on retry)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "No workflow of that name is registered in this process."
    default_code = "unknown_workflow"


class NotStartable(exceptions.APIException):
    """No workflow this user may start over HTTP has that name.

    A name that is not registered and one this user may not start answer the same, so
    names cannot be probed; with ``DEBUG = True`` the detail says which it is.
    """

    status_code = status.HTTP_403_FORBIDDEN
    default_code = "not_startable"

    def __init__(self, name: str, reason: str | None = None) -> None:
        said = f"No workflow named {name!r} may be started over HTTP"
        if reason is None:
            said += (
                ": a workflow must be registered, be declared with http_start=True, and "
                "be allowed by the access policy's can_start()."
            )
        else:
            said += f": {reason}"
        super().__init__(said)


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


class RunFinishedError(exceptions.APIException):
    """The run has already finished: there is nothing to cancel, no message is taken."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The run has already finished."
    default_code = "run_finished"


class NotRetryable(exceptions.APIException):
    """Only failed or cancelled runs can be retried."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Only failed or cancelled runs can be retried."
    default_code = "not_retryable"


class NotForkable(exceptions.APIException):
    """Only a completed, failed or cancelled run can be forked."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Only a completed, failed or cancelled run can be forked."
    default_code = "not_forkable"


class InvalidFromStep(exceptions.APIException):
    """``from_step`` is not a step the run can be forked from."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "from_step must be a whole number from 0 to the steps the run recorded."
    default_code = "invalid_from_step"


class TokenError(exceptions.APIException):
    """The run access token does not allow this request; ``code`` says why."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The access token does not allow this."
    default_code = "token_invalid"


def token_not_accepted(where: str) -> TokenError:
    """Return the error of a token sent where tokens are not accepted."""
    return TokenError(f"Run access tokens are not accepted {where}.", code="token_not_accepted")


def to_api_exception(exc: Exception) -> Exception:
    """Return the API exception for a django-durable error (others pass through)."""
    # Django's own, as DRF's handler would turn them, but here: so that they get a code too.
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, PayloadTooLarge):
        return PayloadTooLargeError(str(exc))
    if isinstance(exc, SerializationError):
        return InvalidPayload(str(exc))
    if isinstance(exc, WorkflowNotFound):
        return UnknownWorkflow()  # the Python message lists every workflow: not for clients
    if isinstance(exc, RunNotFound):
        return RunNotFoundError()
    if isinstance(exc, RunFinished):
        return RunFinishedError(str(exc))
    if isinstance(exc, RunNotForkable):
        return NotForkable(str(exc)) if exc.reason == "unfinished" else InvalidFromStep(str(exc))
    if isinstance(exc, TokenRefused):
        return TokenError(str(exc), code=f"token_{exc.reason}")
    if isinstance(exc, DurableError):
        return InvalidRequest(str(exc))
    return exc


def exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """Map django-durable's errors, then hand over to the project's handler."""
    handler = cast(Callable[[Exception, dict[str, Any]], Any], api_settings.EXCEPTION_HANDLER)
    exc = to_api_exception(exc)
    response = handler(exc, context)
    if response is not None and isinstance(exc, TokenError):
        response["WWW-Authenticate"] = 'Bearer realm="django-durable", error="invalid_token"'
    # A machine-readable code next to a single message: clients branch on it.
    if response is not None and isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        if isinstance(response.data, dict) and "detail" in response.data and isinstance(codes, str):
            response.data.setdefault("code", codes)
    return response
