"""The Django signals of a run's life, re-exported from ``django_durable``.

Each is sent once its change is committed, in the process that made the change, with
``send_robust``: a receiver that raises is logged and the others still run. The sender is
the run's ``Workflow`` (``None`` for a workflow this process does not register), so that
``@receiver(durable.run_failed, sender=fulfill)`` hears only ``fulfill``'s runs. Sending
them is ``store.announce``'s job.
"""

from __future__ import annotations

from django.dispatch import Signal

# A worker claimed a run for the first time.
# Arguments: run_id, workflow_name, queue, worker_id.
run_started = Signal()

# A run reached its end: completed, failed or cancelled, wherever that happened.
# Arguments: run_id, workflow_name, status, error (the error document, or None).
run_finished = Signal()

# A run failed (sent after run_finished).
# Arguments: run_id, workflow_name, error.
run_failed = Signal()

# An attempt of a step failed and its retry policy will try again.
# Arguments: run_id, workflow_name, step_name, position, attempt, error, retry_at.
step_retried = Signal()

# A worker took a run back from a worker whose lease on it expired.
# Arguments: run_id, workflow_name, lost_worker, worker_id, takeovers, status.
run_taken_over = Signal()
