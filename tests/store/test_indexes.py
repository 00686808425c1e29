"""Claiming stays an index scan of ready rows however many finished runs pile up."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from django_durable.models import Run, RunStatus
from django_durable.store import claims, dialect
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.django_db(transaction=True)


def claim_plan() -> str:
    """Return the plan of the claim statement itself, as a worker that knows 50 workflows
    makes it (the names filter the rows the index yields)."""
    d = dialect.dialect()
    params: dict = {"worker": "w", "limit": 4}
    names = ["tests.add", *(f"tests.other_{n}" for n in range(49))]
    sql = claims._claim_sql(d, params, ["default"], [], names, 10)
    explain = "EXPLAIN " if ON_POSTGRES else "EXPLAIN QUERY PLAN "
    with connection.cursor() as cursor:
        cursor.execute(explain + sql, params)
        return "\n".join(str(row) for row in cursor.fetchall())


def test_the_claim_query_uses_the_partial_index_of_ready_runs():
    now = timezone.now()
    Run.objects.bulk_create(
        Run(workflow_name="tests.add", status=RunStatus.COMPLETED, finished_at=now, input={})
        for _ in range(20_000)
    )
    Run.objects.bulk_create(Run(workflow_name="tests.add", input={}) for _ in range(5))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE durable_run")
    plan = claim_plan()
    print(plan)
    assert "durable_run_ready" in plan
    assert "Seq Scan" not in plan and "SCAN durable_run\n" not in plan + "\n"
