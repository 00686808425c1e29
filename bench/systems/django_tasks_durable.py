"""django-tasks on django-durable: W2 only, Django Tasks run by ``DurableBackend``.

The same task as django-tasks-db's (``django_tasks_project/tasks.py``, a ``@task`` of the
django-tasks backport), enqueued the same way (``noop.enqueue(1)``, all in one transaction),
but stored and run by django-durable: one ``run_workflow_worker`` process with
``--concurrency {n}``, as django-durable's own W2. The clock runs from the enqueue's commit
to the last run's ``finished_at``.
"""

from __future__ import annotations

import os
import time

from bench import workloads
from bench.systems import base, durable

SUPPORTED = {
    "W2": "Django Tasks (the django-tasks backport's @task) on DurableBackend: one"
    " run_workflow_worker process, --concurrency {n}"
}
UNSUPPORTED = {
    "W1": "a task is one step",
    "W3": "a task takes no messages",
    "W4": "a task writes no streams",
}
SETTINGS = "bench.systems.django_tasks_project.durable_settings"


def setup(dsn: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["BENCH_DATABASE_URL"] = dsn
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def w2(dsn: str, runs: int, concurrency: int) -> dict:
    from django.db import transaction
    from django.db.models import Max

    from bench.systems.django_tasks_project.tasks import noop
    from django_durable.models import Run

    worker = durable.start_worker(dsn, concurrency, settings=SETTINGS)
    try:
        began = time.perf_counter()
        with transaction.atomic():
            for _ in range(runs):
                noop.enqueue(1)
        enqueue_seconds = time.perf_counter() - began
        committed = time.time()
        base.wait_until(
            lambda: base.check_alive([worker]) and Run.objects.finished().count() >= runs,
            timeout=600,
            what="the tasks to finish",
        )
    finally:
        base.stop([worker])
    failed = Run.objects.exclude(status="completed").count()
    if failed:
        raise RuntimeError(f"{failed} tasks did not succeed")
    last = Run.objects.aggregate(last=Max("finished_at"))["last"].timestamp()
    return base.throughput(
        runs=runs, steps=1, seconds=last - committed, enqueue_seconds=enqueue_seconds
    )


def main() -> None:
    args = base.parse_args(SUPPORTED)
    setup(args.dsn)
    base.emit(w2(args.dsn, workloads.sizes(args.quick).w2_runs, args.concurrency))


if __name__ == "__main__":
    main()
