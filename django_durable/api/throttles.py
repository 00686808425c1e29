"""Throttling the API's writes: a DRF throttle scope per kind of request.

``durable_start`` (``POST runs/``), ``durable_send`` (``POST runs/{id}/messages/``),
``durable_emit`` (``POST events/``), ``durable_webhook`` (``POST webhooks/{source}/``) and
``durable_callback`` (``POST callbacks/{token}/`` and its ``fail/``).
A project sets their rates in ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``; a scope without
a rate is not limited. Reads and long polls are left to the project's own throttle classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

SCOPES = ("durable_start", "durable_send", "durable_emit", "durable_webhook", "durable_callback")


class ScopeThrottle(ScopedRateThrottle):
    """DRF's scoped throttle for one named scope; no rate configured means no limit.

    DRF's own raises ImproperlyConfigured (a 500) for a scope without a rate, and reads the
    rates once, at import: this one reads them at each request (tests change them).
    """

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.named_scope = scope

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = self.named_scope
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super(ScopedRateThrottle, self).allow_request(request, view)

    def get_rate(self) -> str | None:
        rates: Mapping[str, Any] = api_settings.DEFAULT_THROTTLE_RATES or {}
        return rates.get(self.named_scope)
