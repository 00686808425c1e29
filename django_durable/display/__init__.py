"""How runs, steps, workers and what runs publish read for people.

One place, so that the admin, the HTTP API and ``manage.py durable`` say the same thing in the
same words: stored documents (``documents``), durations and moments (``times``), progress and
channels (``channels``), a run in a sentence (``summary``), a step's counters (``steps``),
and which workers know a run's workflow (``workers``).
"""

from .channels import (
    MAX_KEYS,
    MAX_MESSAGES,
    PROGRESS_CHARS,
    MessageSummary,
    Progress,
    RunChannels,
    StreamSummary,
    ValueSummary,
    latest_values,
    progress_by_run,
    recent_messages,
    run_channels,
    stream_summaries,
)
from .documents import (
    PREVIEW_CHARS,
    UNREADABLE,
    VALUE_CHARS,
    error_details,
    error_summary,
    head_document,
    head_pretty,
    head_preview,
    json_head,
    pretty_json,
    preview,
)
from .steps import attempts_text
from .summary import (
    RunSummary,
    flow_description,
    summarize,
    summarize_many,
    waiting_description,
)
from .times import alive_since, clock, format_duration, moment, relative, run_seconds, worker_alive
from .workers import KnownBy, known_by, known_by_sentence

__all__ = [
    "MAX_KEYS",
    "MAX_MESSAGES",
    "PREVIEW_CHARS",
    "PROGRESS_CHARS",
    "UNREADABLE",
    "VALUE_CHARS",
    "KnownBy",
    "MessageSummary",
    "Progress",
    "RunChannels",
    "RunSummary",
    "StreamSummary",
    "ValueSummary",
    "alive_since",
    "attempts_text",
    "clock",
    "error_details",
    "error_summary",
    "flow_description",
    "format_duration",
    "head_document",
    "head_pretty",
    "head_preview",
    "json_head",
    "known_by",
    "known_by_sentence",
    "latest_values",
    "moment",
    "pretty_json",
    "preview",
    "progress_by_run",
    "recent_messages",
    "relative",
    "run_channels",
    "run_seconds",
    "stream_summaries",
    "summarize",
    "summarize_many",
    "waiting_description",
    "worker_alive",
]
