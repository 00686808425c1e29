"""A run this worker is executing, and what it has heard about it since it claimed it."""

from __future__ import annotations

import dataclasses
import time

from ..core import clock
from ..store.records import Claim


@dataclasses.dataclass(eq=False, slots=True)
class InFlight:
    """A claim this worker is executing."""

    claim: Claim
    lost: bool = False  # the heartbeat found the lease taken over
    # durable.cancel() asked the run to stop: the reason, once known.
    cancel_reason: str | None = None
    # A NOTIFY said the run was cancelled; the reason is read when the run next asks.
    cancel_heard: bool = False
    # Until when (time.monotonic()) the lease surely holds: the claim or renewal's
    # statement began before the database's now() that set the lease's end. 0: unknown.
    lease_until: float = 0.0
    # What a test had skipped of the clock then (core.clock): a skip ends leases sooner.
    skipped: float = 0.0

    def __post_init__(self) -> None:
        self.cancel_reason = self.claim.cancel_reason

    def heard_cancel(self) -> None:
        """Note a cancellation NOTIFY (called from the listener's thread)."""
        self.cancel_heard = True

    def renewed(self, began: float, skipped: float, lease_seconds: float) -> None:
        """Note a lease given or renewed by a statement begun at ``began`` (monotonic)."""
        self.lease_until = began + lease_seconds
        self.skipped = skipped

    def lease_left(self) -> float:
        """Return the seconds the lease surely holds (0 or less: it may have ended)."""
        if self.lost:
            return 0.0
        return self.lease_until - time.monotonic() - (clock.skipped() - self.skipped)
