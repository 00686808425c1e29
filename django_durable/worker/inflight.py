"""A run this worker is executing, and what it has heard about it since it claimed it."""

from __future__ import annotations

import dataclasses

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

    def __post_init__(self) -> None:
        self.cancel_reason = self.claim.cancel_reason

    def heard_cancel(self) -> None:
        """Note a cancellation NOTIFY (called from the listener's thread)."""
        self.cancel_heard = True
