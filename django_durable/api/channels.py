"""What goes into a run and what comes out of it while it runs: ``runs/{id}/messages/``
delivers a message to the run, ``runs/{id}/values/{key}/`` reads (long-polls) a value it
wrote. A run's streams are in ``sse``.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from ..client.lookup import run_status
from ..client.messaging import send
from ..client.values import watch_value
from ..core.conf import get_settings
from .base import NOT_FOUND, WHOLE_NUMBER, DurableView, documented, text_param
from .errors import ValueNotFound
from .serializers import IdSerializer, SendMessageSerializer


class RunMessagesView(DurableView):
    """``POST runs/{id}/messages/``: deliver a message (202)."""

    token_ability = "send"
    throttle_scopes = {"POST": "durable_send"}

    @documented(
        request=SendMessageSerializer,
        responses={202: IdSerializer},
        errors={
            400: "Invalid fields; `parse_error`: the body is not JSON or nests too deeply; "
            "`invalid_payload`: the message cannot be stored as JSON.",
            404: NOT_FOUND,
            409: "`run_finished`: the run has finished: the message would never be taken, so "
            "it is not stored.",
        },
    )
    def post(self, request: Request, run_id: str) -> Response:
        """Send the run a message for its ``ctx.recv(topic)`` (202)."""
        run = self.operable_run(run_id)
        given = SendMessageSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        message_id = send(run.pk, data["message"], data.get("topic"), data.get("idempotency_key"))
        return Response({"id": message_id}, status=status.HTTP_202_ACCEPTED)


class RunValueView(DurableView):
    """``GET runs/{id}/values/{key}/?timeout=s&after=version``: a value, long-polled."""

    token_ability = "read"

    def schema_parameters(self) -> list[OpenApiParameter]:
        """Return the long poll's ``timeout``, capped at ``API_MAX_WAIT`` as configured now."""
        most = get_settings().API_MAX_WAIT
        return [
            OpenApiParameter(
                "timeout",
                {"type": "number", "minimum": 0, "maximum": most, "default": 0},
                description=f"Seconds to wait for a value (or a newer one), at most {most:g} "
                "(`API_MAX_WAIT`): a larger number waits only that long.",
            )
        ]

    @documented(
        parameters=[
            OpenApiParameter(
                "after", WHOLE_NUMBER, description="A version you have: wait for a newer one."
            ),
        ],
        responses=inline_serializer(
            "RunValue",
            {
                "key": serializers.CharField(),
                "value": serializers.JSONField(help_text="The value, any JSON."),
                "version": serializers.IntegerField(
                    help_text="Grows with each write of the key (not consecutive)."
                ),
                "run_status": serializers.CharField(
                    help_text="The run's status now (a `StatusEnum`): once it is `completed`, "
                    "`failed` or `cancelled`, no newer version will come.",
                ),
            },
        ),
        errors={
            400: "`parse_error`: `timeout` is negative or not a number, `after` is not a whole "
            "number from 0 to 2**63-1, or the key holds NUL or a lone surrogate.",
            404: f"{NOT_FOUND} `value_not_found`: the run has no value under that key (yet).",
        },
    )
    def get(self, request: Request, run_id: str, key: str) -> Response:
        """Return the newest value of ``key``, waiting up to ``timeout`` for one past ``after``."""
        run = self.visible_run(run_id)
        text_param("key", key)
        timeout = self.query_float("timeout", get_settings().API_MAX_WAIT)
        after = self.query_int("after")
        found = watch_value(run.pk, key, after=after, timeout=timeout)
        if found is None and after is not None:  # nothing newer: answer with what is current
            found = watch_value(run.pk, key)
        if found is None:
            raise ValueNotFound(f"Run {run.pk} has no value {key!r}.")
        # The run's status says whether to poll again (a finished run writes no more).
        return Response(
            {
                "key": key,
                "value": found.value,
                "version": found.version,
                "run_status": run_status(run),
            }
        )
