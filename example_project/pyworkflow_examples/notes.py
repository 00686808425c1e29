"""What the steps print: pyworkflow's examples ``print()`` in every step; these ``note()``.

A note goes to the worker's log, as the seed's prints do, and leaves a ``BodyExecution``
row: which run, step and attempt, in which process. ``manage.py demo`` counts those rows to
show what ran where, what was retried, and what ran again after a worker was killed.
"""

from __future__ import annotations

import os

import django_durable as durable

from .models import BodyExecution


async def note(text: str) -> None:
    """Print ``text`` for the step being executed, and keep a row of this execution."""
    info = durable.step_info()
    print(f"[{info.name} #{info.attempt}] {text}", flush=True)
    await BodyExecution.objects.acreate(
        run_id=info.run_id, step=info.name, attempt=info.attempt, pid=os.getpid(), text=text[:200]
    )
