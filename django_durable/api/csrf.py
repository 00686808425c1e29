"""``GET csrf/``: the CSRF cookie for browsers that use the API with a Django session.

A page served by another frontend (a single-page app) has no Django form that would set the
``csrftoken`` cookie; it asks here first, then sends the token in an ``X-CSRFToken`` header
with every POST. Pages with a per-run access token need none of this.
"""

from __future__ import annotations

from typing import Any

from django.middleware.csrf import get_token
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .base import documented


class CsrfView(APIView):
    """Set the CSRF cookie and return its token (no login needed: it is not a secret)."""

    authentication_classes = ()
    permission_classes = ()
    renderer_classes = (JSONRenderer,)

    @documented(
        responses=inline_serializer("CsrfToken", {"csrf_token": serializers.CharField()}),
        auth=[],
    )
    @method_decorator(ensure_csrf_cookie)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Set the ``csrftoken`` cookie and return its token, for the POSTs of a session."""
        return Response({"csrf_token": get_token(request._request)})
