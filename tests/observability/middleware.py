"""What opentelemetry-instrumentation-django does for a request, reduced to the part that
matters here: a SERVER span, child of the caller's ``traceparent``, current in the view."""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

# The tracer of the test's TracerProvider (set by the test).
TRACER: Any = None


class ServerSpanMiddleware:
    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        headers = {key.lower(): value for key, value in request.headers.items()}
        caller = propagate.extract(headers, context=Context())
        name = f"{request.method} {request.path}"
        with TRACER.start_as_current_span(name, context=caller, kind=SpanKind.SERVER):
            return self.get_response(request)
