"""What the demo measures: each run's recorded steps, and who executed their bodies.

Two sources are compared. ``django_durable``'s ``Step`` rows say what a run recorded
(a checkpoint per operation, with the attempts it took); the shop's ``StepLog`` rows say
how often each body really ran, and in which process. A plain step whose body ran more
often than its attempts were recorded was interrupted; an atomic step's log row commits
with its checkpoint, so more than one row would be a duplicated write.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django_durable.models import Run, RunStatus, Step, StepStatus

from .models import Order, StepLog
from .workflows import ATOMIC_STEPS


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StepFacts:
    """One recorded operation of a run, and the processes that executed its body."""

    position: int
    kind: str
    name: str
    status: str
    attempts: int
    pids: tuple[int, ...]  # one per execution of the body, oldest first

    @property
    def has_body(self) -> bool:
        """Return whether user code runs for this operation (timers and values have none)."""
        return self.kind == "step"

    @property
    def atomic(self) -> bool:
        """Return whether the body's writes commit with the checkpoint."""
        return self.name in ATOMIC_STEPS

    @property
    def interrupted(self) -> int:
        """Return how many executions of a plain body were lost before their checkpoint."""
        if not self.has_body or self.atomic:
            return 0
        return max(0, len(self.pids) - self.attempts)

    @property
    def duplicated(self) -> int:
        """Return how many times an atomic body's writes were committed more than once."""
        return max(0, len(self.pids) - 1) if self.atomic else 0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunFacts:
    """One run of the demo: its order, outcome and recorded operations."""

    run_id: str
    order: Order
    status: str
    waiting_for: str  # what a waiting run waits for: "sleep until ...", "retry of ..."
    result: Any
    error: dict[str, Any] | None
    steps: tuple[StepFacts, ...]

    @property
    def completed(self) -> bool:
        """Return whether the run returned a result."""
        return self.status == RunStatus.COMPLETED

    @property
    def checkpointed(self) -> list[str]:
        """Return the names of the operations the run completed, in order."""
        return [step.name for step in self.steps if step.status == StepStatus.COMPLETED]

    @property
    def shipped(self) -> bool:
        """Return whether the order row agrees with the run's result."""
        tracking = self.result.get("tracking") if isinstance(self.result, dict) else None
        return self.order.status == Order.Status.SHIPPED and self.order.tracking == tracking


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Totals over the demo's runs, all computed from the database."""

    runs: int
    completed: int
    checkpoints: int
    interrupted: int
    duplicated: int
    retried: int
    shipped: int

    @property
    def ok(self) -> bool:
        """Return whether every run completed and shipped, and no atomic write was duplicated."""
        return self.completed == self.runs and self.duplicated == 0 and self.shipped == self.runs


def executions(run_ids: Iterable[str]) -> dict[tuple[str, str], list[int]]:
    """Return the pids that executed each ``(run_id, step)`` body, oldest first."""
    pids: dict[tuple[str, str], list[int]] = defaultdict(list)
    logs = StepLog.objects.filter(run_id__in=list(run_ids)).order_by("created_at", "id")
    for run_id, step, pid in logs.values_list("run_id", "step", "pid"):
        pids[run_id, step].append(pid)
    return pids


def recorded(run_ids: Iterable[str]) -> dict[str, list[Step]]:
    """Return each run's recorded operations in position order."""
    steps: dict[str, list[Step]] = defaultdict(list)
    for step in Step.objects.filter(run_id__in=list(run_ids)).order_by("run_id", "position"):
        steps[str(step.run_id)].append(step)
    return steps


def bodies_in_flight(run_ids: list[str]) -> dict[tuple[str, str], int]:
    """Return the plain bodies executing now (started, not recorded) and their executions."""
    attempts = {
        (str(step.run_id), step.name): step.attempts
        for step in Step.objects.filter(run_id__in=run_ids, kind="step")
    }
    return {
        key: len(pids)
        for key, pids in executions(run_ids).items()
        if key[1] not in ATOMIC_STEPS and len(pids) > attempts.get(key, 0)
    }


def checkpoints_done(run_ids: list[str]) -> int:
    """Return how many steps of these runs completed."""
    return Step.objects.filter(run_id__in=run_ids, kind="step", status=StepStatus.COMPLETED).count()


def collect(orders: dict[str, Order]) -> list[RunFacts]:
    """Return the facts of each run in ``orders`` (run id to order), read fresh."""
    run_ids = list(orders)
    pids = executions(run_ids)
    steps = recorded(run_ids)
    fresh = Order.objects.in_bulk([order.pk for order in orders.values()])
    runs = {str(run.pk): run for run in Run.objects.filter(pk__in=run_ids)}
    facts = []
    for run_id, order in orders.items():
        run = runs[run_id]
        facts.append(
            RunFacts(
                run_id=run_id,
                order=fresh[order.pk],
                status=run.status,
                waiting_for=run.waiting_for,
                result=run.get_result() if run.status == RunStatus.COMPLETED else None,
                error=run.error,
                steps=tuple(_step_facts(step, pids) for step in steps[run_id]),
            )
        )
    return facts


def _step_facts(step: Step, pids: dict[tuple[str, str], list[int]]) -> StepFacts:
    return StepFacts(
        position=step.position,
        kind=step.kind,
        name=step.name,
        status=step.status,
        attempts=step.attempts,
        pids=tuple(pids.get((str(step.run_id), step.name), ())) if step.kind == "step" else (),
    )


def summarise(runs: list[RunFacts]) -> Summary:
    """Return the totals the demo's last line reports."""
    steps = [step for run in runs for step in run.steps]
    return Summary(
        runs=len(runs),
        completed=sum(run.completed for run in runs),
        checkpoints=len(steps),
        interrupted=sum(step.interrupted for step in steps),
        duplicated=sum(step.duplicated for step in steps),
        retried=sum(step.attempts - 1 for step in steps),
        shipped=sum(run.shipped for run in runs),
    )
