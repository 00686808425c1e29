"""The run a log line is about, as attributes of the log record (``extra`` fields).

While a worker executes a run, every record of the ``django_durable`` logger gets
``durable_run_id``, ``durable_workflow``, ``durable_attempt`` and ``durable_worker_id``, and,
inside a step's body, ``durable_step`` and ``durable_step_attempt``: JSON log formatters
print them as fields. ``RunLogFilter`` (``durable.RunLogFilter``) adds the same fields to any
handler's records, the application's own lines in step bodies included.
"""

from __future__ import annotations

import dataclasses
import logging
from contextvars import ContextVar
from typing import Any

from .runtime import current_step

RUN_ID = "durable_run_id"
WORKFLOW = "durable_workflow"
ATTEMPT = "durable_attempt"
WORKER = "durable_worker_id"
STEP = "durable_step"
STEP_ATTEMPT = "durable_step_attempt"


@dataclasses.dataclass(frozen=True, slots=True)
class RunFields:
    """The run a worker thread is executing, for its log lines."""

    run_id: str
    workflow: str
    attempt: int
    worker_id: str | None = None


# The run being executed in this thread or task, set by the worker around each execution.
current_run: ContextVar[RunFields | None] = ContextVar("durable_log_run", default=None)


def run_extra(
    run_id: Any, workflow: str, *, attempt: int | None = None, worker_id: str | None = None
) -> dict[str, Any]:
    """Return the ``extra`` of a log line about a run, logged outside its execution."""
    extra: dict[str, Any] = {RUN_ID: str(run_id), WORKFLOW: workflow}
    if attempt is not None:
        extra[ATTEMPT] = attempt
    if worker_id is not None:
        extra[WORKER] = worker_id
    return extra


def current_fields() -> dict[str, Any]:
    """Return the fields of the run and step executing here (empty outside a run)."""
    fields: dict[str, Any] = {}
    run = current_run.get()
    if run is not None:
        fields.update(run_extra(run.run_id, run.workflow, attempt=run.attempt))
        if run.worker_id is not None:
            fields[WORKER] = run.worker_id
    step = current_step.get()
    if step is not None:
        fields.setdefault(RUN_ID, step.run_id)
        fields.setdefault(WORKFLOW, step.workflow_name)
        fields[STEP] = step.name
        fields[STEP_ATTEMPT] = step.attempt
    return fields


class RunLogFilter(logging.Filter):
    """Add the run, workflow, attempt, worker and step being executed to each record.

    A field the call passed in ``extra`` is kept. Outside a run the record is unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; let every record through."""
        for key, value in current_fields().items():
            record.__dict__.setdefault(key, value)
        return True


def install() -> None:
    """Add a ``RunLogFilter`` to the ``django_durable`` logger, once per process."""
    logger = logging.getLogger("django_durable")
    if not any(isinstance(existing, RunLogFilter) for existing in logger.filters):
        logger.addFilter(RunLogFilter())
