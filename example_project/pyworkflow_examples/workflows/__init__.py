"""pyworkflow's ten Celery examples, one module each, written with django-durable.

django-durable imports each installed app's ``workflows`` module at startup; importing the
ten modules here registers their workflows. Each module names the seed file it ports.
"""

from . import (
    basic,
    batch,
    cancellation,
    child_patterns,
    child_workflows,
    fault_tolerance,
    hooks,
    idempotency,
    long_running,
    retries,
)

__all__ = [
    "basic",
    "batch",
    "cancellation",
    "child_patterns",
    "child_workflows",
    "fault_tolerance",
    "hooks",
    "idempotency",
    "long_running",
    "retries",
]
