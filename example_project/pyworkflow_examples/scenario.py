"""pyworkflow's ten Celery examples as ``manage.py demo`` scenarios, ``pyworkflow-*``.

The scenarios live in ``scenarios/``, one module per group; importing them registers them.
"""

from .scenarios import children, fault_tolerance, steps, waiting

__all__ = ["children", "fault_tolerance", "steps", "waiting"]
