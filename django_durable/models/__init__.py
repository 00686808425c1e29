"""The models: runs and their records, channels, schedules and trigger deliveries, workers,
per-run access tokens.

Split by concern into modules; Django and the migrations find every model here.
"""

from ..core.statuses import CallbackStatus, MissedTicks, ParentClose, RunStatus, StepStatus
from .channels import Event, Message, RunValue, StreamItem
from .orchestration import Schedule, TriggerDelivery
from .runs import Run, RunQuerySet, Step, uuid7
from .tokens import RunToken
from .waits import Callback, WakeKey
from .workers import WorkerProcess

__all__ = [
    "Callback",
    "CallbackStatus",
    "Event",
    "Message",
    "MissedTicks",
    "ParentClose",
    "Run",
    "RunQuerySet",
    "RunStatus",
    "RunToken",
    "RunValue",
    "Schedule",
    "Step",
    "StepStatus",
    "StreamItem",
    "TriggerDelivery",
    "WakeKey",
    "WorkerProcess",
    "uuid7",
]
