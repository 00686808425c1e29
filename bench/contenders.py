"""Who takes part in which case: the systems, their variants, and what each case measures."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Contender:
    """One system, run one way: ``python -m MODULE WORKLOAD --variant VARIANT``."""

    key: str
    label: str
    module: str
    variant: str | None = None
    # The cases it runs: (workload, concurrency). None as the concurrency: the system sets
    # its own (DBOS's direct start has no limit); the row goes with the concurrency-4 case.
    cases: tuple[tuple[str, int | None], ...]
    # How it runs each workload, for the report (defaults to the module's SUPPORTED).
    how: dict[str, str] = field(default_factory=dict)
    # Workloads it cannot run, with the reason (defaults to the module's UNSUPPORTED).
    reasons: dict[str, str] = field(default_factory=dict)

    def describe(self, workload: str) -> str:
        """How this contender runs ``workload``."""
        if workload in self.how:
            return self.how[workload]
        return importlib.import_module(self.module).SUPPORTED.get(workload, "")

    def unsupported(self) -> dict[str, str]:
        """The workloads this contender does not run, with the reason."""
        if self.reasons:
            return self.reasons
        return importlib.import_module(self.module).UNSUPPORTED


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    """The figure a workload is judged by, and its companion."""

    key: str
    unit: str
    higher_is_better: bool
    second_key: str | None = None
    second_unit: str = ""
    # Further figures shown after the two: (key, unit).
    more: tuple[tuple[str, str], ...] = ()


METRICS = {
    "L0": Metric(key="commits_per_s", unit="commits/s", higher_is_better=True),
    "W1": Metric(
        key="steps_per_s",
        unit="steps/s",
        higher_is_better=True,
        second_key="runs_per_s",
        second_unit="runs/s",
    ),
    "W2": Metric(key="runs_per_s", unit="runs/s", higher_is_better=True),
    "W3": Metric(
        key="median_ms",
        unit="ms (median)",
        higher_is_better=False,
        second_key="p95_ms",
        second_unit="ms (p95)",
    ),
    "W4": Metric(
        key="written_per_s",
        unit="items/s written",
        higher_is_better=True,
        second_key="read_per_s",
        second_unit="items/s read",
        more=(("batched_written_per_s", "items/s written in batches of 100"),),
    ),
}

CONTENDERS = (
    Contender(
        key="postgres",
        label="PostgreSQL alone",
        module="bench.systems.postgres",
        cases=(("L0", 1), ("L0", 4)),
        how={"L0": "psycopg client processes, one single-row INSERT per transaction"},
    ),
    Contender(
        key="durable",
        label="django-durable",
        module="bench.systems.durable",
        cases=(("W1", 1), ("W1", 4), ("W2", 4), ("W3", 4), ("W4", 4)),
    ),
    Contender(
        key="durable-keyed",
        label="django-durable, concurrency key",
        module="bench.systems.durable",
        variant="keyed",
        cases=(("W2", 4),),
        how={
            "W2": "as django-durable's W2, with concurrency_key= over 100 customers"
            " (runs started round-robin), concurrency_limit=1"
        },
        reasons=dict.fromkeys(("W1", "W3", "W4"), "flow control is measured on W2 only"),
    ),
    Contender(
        key="durable-hot-key",
        label="django-durable, beside a hot key",
        module="bench.systems.durable",
        variant="hot-key",
        cases=(("W2", 4),),
        how={
            "W2": "as django-durable's W2, beside 10,000 runs of one concurrency key queued"
            " behind its one slot (held by a run of a worker that is gone, under a lease of"
            " an hour)"
        },
        reasons=dict.fromkeys(("W1", "W3", "W4"), "the hot key is measured on W2 only"),
    ),
    *(
        Contender(
            key=f"durable-p{processes}",
            label=f"django-durable, {processes} processes",
            module="bench.systems.durable",
            variant=f"processes-{processes}",
            cases=(("W1", 4), ("W2", 4)),
            how={
                workload: f"run_workflow_worker --processes {processes} --concurrency"
                f" {4 // processes} (--concurrency is per process: 4 runs at once in all)"
                for workload in ("W1", "W2")
            },
            reasons={
                "W3": "worker processes are measured on W1 and W2 only",
                "W4": "worker processes are measured on W1 and W2 only",
            },
        )
        for processes in (2, 4)
    ),
    Contender(
        key="dbos-queue",
        label="DBOS, queue",
        module="bench.systems.dbos",
        variant="queue",
        cases=(("W1", 1), ("W1", 4), ("W2", 4)),
        how={
            "W1": "a worker process with a queue (worker_concurrency {n}, default 1 s polling);"
            " runs enqueued in one transaction by DBOSClient",
            "W2": "a worker process with a queue (worker_concurrency {n}, default 1 s polling);"
            " runs enqueued in one transaction by DBOSClient",
        },
        reasons={"W3": "see 'DBOS, one process'", "W4": "see 'DBOS, one process'"},
    ),
    Contender(
        key="dbos-direct",
        label="DBOS, one process",
        module="bench.systems.dbos",
        variant="direct",
        cases=(("W1", None), ("W2", None), ("W3", 4), ("W4", 4)),
        how={
            "W1": "DBOS.start_workflow in the process that runs them: no queue, no"
            " concurrency limit",
            "W2": "DBOS.start_workflow in the process that runs them: no queue, no"
            " concurrency limit",
        },
    ),
    Contender(
        key="absurd",
        label="Absurd",
        module="bench.systems.absurd",
        cases=(("W1", 1), ("W1", 4), ("W2", 4), ("W3", 4)),
    ),
    Contender(
        key="procrastinate",
        label="procrastinate",
        module="bench.systems.procrastinate",
        cases=(("W2", 4),),
    ),
    Contender(
        key="django-tasks",
        label="django-tasks-db",
        module="bench.systems.django_tasks",
        cases=(("W2", 4),),
    ),
    Contender(
        key="django-tasks-durable",
        label="django-tasks on django-durable",
        module="bench.systems.django_tasks_durable",
        cases=(("W2", 4),),
    ),
)


# Scaling with worker processes at the same total concurrency (4 runs at once): the
# contender that runs W1 and W2 with each number of `run_workflow_worker` processes.
SCALING_CONCURRENCY = 4
SCALING = {1: "durable", 2: "durable-p2", 4: "durable-p4"}


def by_key() -> dict[str, Contender]:
    """The contenders by key."""
    return {contender.key: contender for contender in CONTENDERS}
