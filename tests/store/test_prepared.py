"""The hot path's statements are prepared on PostgreSQL (``PREPARE_STATEMENTS``): planned
once per connection, not at every checkpoint and claim; Django's own queries are not."""

from __future__ import annotations

import pytest
from django.db import connection

from django_durable.models import Run
from django_durable.worker.worker import Worker
from tests.testapp import workflows as wf

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="SQLite has no prepared statements to keep"
    ),
]


def prepared() -> list[str]:
    """Return the statements prepared on this process's connection, as their text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def run_three_steps() -> None:
    handle = wf.counted.start(3)
    Worker(concurrency=1).run_once()
    assert handle.refresh().status == "completed"


def test_the_claim_and_the_checkpoints_are_prepared_once_each():
    run_three_steps()
    first = prepared()
    assert any("FOR UPDATE SKIP LOCKED" in text for text in first), first  # the claim
    assert any("INSERT INTO durable_step" in text for text in first), first  # checkpoints
    assert len(first) == len(set(first))
    run_three_steps()
    # The second run reused them: nothing new, nothing prepared twice.
    assert sorted(prepared()) == sorted(first)


def test_djangos_own_queries_are_not_prepared():
    run_three_steps()
    before = prepared()
    for _ in range(10):
        list(Run.objects.filter(status="completed").values_list("id", flat=True))
    assert prepared() == before
    assert not any("durable_run" in text and '"durable_run"' in text for text in before)


def test_prepare_statements_false_prepares_nothing(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "PREPARE_STATEMENTS": False}
    connection.close()  # a fresh session: nothing prepared by an earlier test
    run_three_steps()
    assert prepared() == []
