"""Request bodies: JSON with a size limit and no stack overflow, and CloudEvents."""

from __future__ import annotations

import json
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from ..core.conf import get_settings
from ..core.serialization import check_depth
from ..exceptions import SerializationError
from .errors import PayloadTooLargeError

# Room for the envelope around a payload (names, topics, keys).
ENVELOPE_BYTES = 64 * 1024


def read_limited(stream: IO[bytes]) -> bytes:
    """Read a request body, refusing it with 413 past the payload limit (plus envelope)."""
    limit = get_settings().MAX_PAYLOAD_BYTES + ENVELOPE_BYTES
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise PayloadTooLargeError(f"The request body is over {limit} bytes.")
    return body


def loads_body(body: bytes) -> Any:
    """Parse JSON, turning every way it can fail into a 400.

    The nesting is checked on the text first (MAX_JSON_DEPTH): a deep document is refused
    before it is parsed, let alone stored.
    """
    try:
        text = body.decode("utf-8")
        check_depth(text, what="The JSON body")
        return json.loads(text) if text else None
    except SerializationError as exc:
        raise ParseError(str(exc)) from None
    except RecursionError:
        raise ParseError("The JSON is nested too deeply.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"The body is not valid JSON: {exc}") from None


class JSONParser(parsers.BaseParser):
    """``application/json``, read within the payload limit."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return loads_body(read_limited(stream))


class CloudEventParser(JSONParser):
    """``application/cloudevents+json``: a CloudEvent in structured mode."""

    media_type = "application/cloudevents+json"
