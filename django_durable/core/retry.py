"""When a failed step or workflow runs again, and how long it waits first."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from ..exceptions import (
    EventDataInvalid,
    FatalError,
    NonDeterministicWorkflow,
    RetryableError,
    SerializationError,
)

# Errors that retrying the same code cannot fix.
NEVER_RETRIED: tuple[type[BaseException], ...] = (
    FatalError,
    NonDeterministicWorkflow,
    SerializationError,
    EventDataInvalid,  # the recorded event does not change
)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retry up to ``max_attempts`` times in all, waiting longer each time.

    The wait before attempt ``n + 1`` is ``initial_delay * backoff ** (n - 1)`` seconds,
    capped at ``max_delay``, then spread by ``± jitter`` (a fraction) so that runs that
    failed together do not retry together. ``RetryableError(retry_after=s)`` overrides
    the wait; ``FatalError`` is never retried; only exceptions in ``retry_on`` are.
    """

    max_attempts: int = 1
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1.")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays cannot be negative.")
        if self.backoff < 1:
            raise ValueError("RetryPolicy.backoff must be at least 1.")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1.")
        if isinstance(self.retry_on, type):
            object.__setattr__(self, "retry_on", (self.retry_on,))

    @classmethod
    def from_settings(cls, options: dict[str, Any]) -> RetryPolicy:
        """Build a policy from a settings dict of keyword arguments."""
        return cls(**options)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Return whether the attempt numbered ``attempt`` that raised ``exc`` is retried."""
        if attempt >= self.max_attempts or isinstance(exc, NEVER_RETRIED):
            return False
        return isinstance(exc, (RetryableError, *self.retry_on))

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """Return the seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            return max(0.0, float(exc.retry_after))
        base = min(self.max_delay, self.initial_delay * self.backoff ** max(0, attempt - 1))
        if self.jitter:
            base *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return max(0.0, base)
