"""A step's counters in words: the attempts its retry policy counted, and the executions of
its body that a lost worker cut short (those are not attempts, but they did run)."""

from __future__ import annotations

from ..models import Step, StepStatus


def attempts_text(step: Step) -> str:
    """Return the step's attempts, with its executions where they differ.

    ``2`` for a step whose body ran twice and failed once; ``1 (ran 2 times)`` for one
    whose first execution was cut short by a lost worker; ``running (execution 2)`` for a
    body that began and has not ended.
    """
    executions = step.executions
    if step.status == StepStatus.RUNNING:
        return f"running (execution {executions or 1})"
    if executions is None or executions <= step.attempts:
        return str(step.attempts)
    return f"{step.attempts} (ran {executions} times)"
