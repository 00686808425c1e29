"""What is executing right now: the run's context, and whether a step body is running."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import BaseContext

# The context of the workflow run executing in this thread or task, if any.
current_context: ContextVar[BaseContext | None] = ContextVar("durable_context", default=None)
# True while a step's body runs: durable operations are not allowed inside it.
inside_step: ContextVar[bool] = ContextVar("durable_inside_step", default=False)
