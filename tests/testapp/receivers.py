"""Signal receivers for worker subprocesses: each signal a worker sends becomes a row.

A worker started with DURABLE_TEST_RECORD_SIGNALS=1 connects them (``apps.py``), so that a
test in another process can read what the worker's signals said. Each row is an
``Execution`` labelled ``signal:<name>[:<status>]`` with the worker's pid.
"""

from __future__ import annotations

import os

import django_durable as durable

from .models import Execution


def _record(signal, run_id: str, status: str = "", **kwargs) -> None:
    name = next(name for name in NAMES if getattr(durable, name) is signal)
    label = f"signal:{name}:{status}" if status else f"signal:{name}"
    Execution.objects.create(run_id=run_id, label=label, pid=os.getpid())


def _raise(**kwargs) -> None:
    raise RuntimeError("a broken receiver")


NAMES = ("run_started", "run_finished", "run_failed", "step_retried", "run_taken_over")


def connect() -> None:
    """Record every signal as a row; also connect a receiver that always raises."""
    for name in NAMES:
        getattr(durable, name).connect(_record, dispatch_uid=f"tests.record.{name}")
    durable.run_finished.connect(_raise, dispatch_uid="tests.raise")
