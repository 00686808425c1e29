"""What is executing right now: the run's context, and the step whose body is running."""

from __future__ import annotations

import dataclasses
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ..exceptions import DurableError

if TYPE_CHECKING:
    from ..engine.replay import BaseContext


@dataclasses.dataclass(frozen=True, slots=True)
class StepInfo:
    """The step whose body is running: ``durable.step_info()`` returns it inside the body.

    ``attempt`` is 1-based and counts the tries the step's retry policy saw fail. A try cut
    short because the worker died is not recorded, so the body run again after a crash
    sees the same number.

    ``timeout`` is the step's timeout in seconds (``None``: none), and ``deadline`` the
    ``time.monotonic()`` reading at which this attempt times out: a body that can stop
    early looks at :meth:`time_left`, since a plain ``def`` body is never interrupted.
    """

    run_id: str
    workflow_name: str
    name: str
    position: int
    attempt: int
    max_attempts: int
    timeout: float | None = None
    deadline: float | None = None

    @property
    def is_last_attempt(self) -> bool:
        """Return whether the retry policy will not try again if this attempt fails."""
        return self.attempt >= self.max_attempts

    def time_left(self) -> float | None:
        """Return the seconds this attempt has left (0 once timed out); ``None``: no timeout."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


# The context of the workflow run executing in this thread or task, if any.
current_context: ContextVar[BaseContext | None] = ContextVar("durable_context", default=None)
# The step whose body runs (durable operations are not allowed inside it), if any.
current_step: ContextVar[StepInfo | None] = ContextVar("durable_step", default=None)


def step_info() -> StepInfo:
    """Return the step whose body is running; raise ``DurableError`` anywhere else."""
    info = current_step.get()
    if info is None:
        raise DurableError(
            "durable.step_info() was called outside a step's body; it tells a running step "
            "about itself (its run, name and attempt)."
        )
    return info
