"""The Django admin: runs with their steps, values, messages and streams, events, workers
and schedules.

All but schedules are read-only history, built to stay fast with millions of rows: no
query per row, no COUNT(*) of the whole table next to the filtered one, no facet counts,
no big JSON columns in the lists, a bounded read of each payload shown, and filter choices
taken from the code (or the newest rows) rather than a DISTINCT over a whole table.
Nothing here edits a row by hand: the actions that cancel and retry runs call the client
(see actions.py), for users with ``django_durable.operate_run``. Schedules are
configuration: they are added and changed here, through the model's validation (see
schedules.py).
"""

from .base import HistoryAdmin
from .channels import EventAdmin, MessageAdmin
from .runs import RunAdmin
from .schedules import ScheduleAdmin
from .workers import WorkerProcessAdmin

__all__ = [
    "EventAdmin",
    "HistoryAdmin",
    "MessageAdmin",
    "RunAdmin",
    "ScheduleAdmin",
    "WorkerProcessAdmin",
]
