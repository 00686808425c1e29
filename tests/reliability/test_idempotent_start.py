"""Idempotent start: 50 threads start a workflow with one key at the same moment; one run.

Each thread has its own database connection (Django's are per thread), and all of them
pass a barrier together, so their inserts race for the unique key. The losers must find the
winner's run and return it, never an error and never a second run.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connections, transaction

import django_durable as durable
from django_durable.models import Run
from tests.reliability.conftest import report
from tests.testapp import reliability_workflows as rw

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50


def race(start: Callable[[], str]) -> tuple[list[str], list[BaseException]]:
    """Call ``start`` in THREADS threads released together; return ids and errors."""
    barrier = threading.Barrier(THREADS)
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            barrier.wait(timeout=60)
            run_id = start()
            with lock:
                ids.append(run_id)
        except BaseException as exc:  # reported by the test, not lost in the thread
            with lock:
                errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a start hung"
    return ids, errors


def by_decorator() -> str:
    return rw.steps.using(idempotency_key="order-1").start(1).id


def by_name_in_a_transaction() -> str:
    with transaction.atomic():  # as a view would: the start joins its transaction
        return durable.start("reliability.steps", [1], idempotency_key="order-2").id


@pytest.mark.parametrize("start", [by_decorator, by_name_in_a_transaction])
def test_50_threads_starting_with_one_key_make_exactly_one_run(start):
    ids, errors = race(start)
    runs = Counter(Run.objects.values_list("idempotency_key", flat=True))
    report(
        f"idempotent-start[{start.__name__}]",
        threads=THREADS,
        returned=len(ids),
        distinct_ids=len(set(ids)),
        runs=sum(runs.values()),
        errors=len(errors),
    )
    assert errors == []
    assert len(ids) == THREADS
    assert len(set(ids)) == 1  # everyone got the same run ...
    assert sum(runs.values()) == 1  # ... and it is the only one
    assert str(Run.objects.get().id) == ids[0]
