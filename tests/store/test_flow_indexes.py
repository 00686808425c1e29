"""Flow control reads indexes only: the probe of keyed ready runs, and the slots of a key."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_durable.models import Run, RunStatus
from django_durable.store import claims, dialect, flow
from tests.conftest import ON_POSTGRES

pytestmark = pytest.mark.django_db(transaction=True)

EXPLAIN = "EXPLAIN " if ON_POSTGRES else "EXPLAIN QUERY PLAN "


def plan(sql: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute(EXPLAIN + sql, params)
        return "\n".join(str(row) for row in cursor.fetchall())


@pytest.fixture
def crowded_table() -> None:
    """20,000 finished runs with keys, 2,000 plain ready runs, 5 keyed ready runs."""
    now = timezone.now()
    Run.objects.bulk_create(
        Run(
            workflow_name="tests.flow_one",
            flow_key=f"c{n % 100}",
            flow_limit=1,
            status=RunStatus.COMPLETED,
            finished_at=now,
            input={},
        )
        for n in range(20_000)
    )
    Run.objects.bulk_create(Run(workflow_name="tests.add", input={}) for _ in range(2_000))
    Run.objects.bulk_create(
        Run(workflow_name="tests.flow_one", flow_key=f"c{n}", flow_limit=1, input={})
        for n in range(5)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE durable_run")


def test_the_probe_reads_the_index_of_keyed_ready_runs_only(crowded_table):
    d = dialect.dialect()
    captured: dict = {}
    real = flow.execute

    def capture(d, sql, params):
        captured.update(sql=sql, params=params)
        return real(d, sql, params)

    flow.execute = capture
    try:
        keys = flow.ready_keys(d, queues=["default"], workflows=["tests.flow_one"], limit=4)
    finally:
        flow.execute = real
    assert len(keys) == 5
    shown = plan(captured["sql"], captured["params"])
    print(shown)
    assert "durable_run_flow_ready" in shown
    assert "Seq Scan" not in shown and "SCAN durable_run\n" not in shown + "\n"


def test_the_claim_counts_a_keys_slots_through_an_index(crowded_table):
    d = dialect.dialect()
    params: dict = {"worker": "w", "limit": 4, "held_w": ["tests.flow_one"], "held_k": ["c1"]}
    sql = claims._claim_sql(d, params, ["default"], [], ["tests.add", "tests.flow_one"], 10)
    shown = plan(sql, params)
    print(shown)
    assert "durable_run_ready" in shown
    assert "Seq Scan" not in shown and "SCAN durable_run\n" not in shown + "\n"
    assert sql.count("UPDATE durable_run") == 1


@pytest.mark.skipif(not ON_POSTGRES, reason="a claim reports keyed runs left on PostgreSQL")
def test_a_head_full_of_one_hot_key_reports_keys_left_without_counting_its_slots():
    """A hot key with more ready runs than the head holds, and no room: the claim still
    says keyed runs may be left, from the head's size alone. Testing each run of the head
    for room counted the same key's running runs 64 times in every claim."""
    Run.objects.bulk_create(
        Run(workflow_name="tests.flow_one", flow_key="hot", flow_limit=1, input={})
        for _ in range(flow.HEAD + 10)
    )
    hot = Run.objects.filter(flow_key="hot").order_by("created_at").first()
    Run.objects.filter(pk=hot.pk).update(
        status=RunStatus.RUNNING,
        claimed_by="another",
        lease_expires_at=timezone.now() + timedelta(hours=1),
    )
    Run.objects.bulk_create(Run(workflow_name="tests.add", input={}) for _ in range(3))
    d = dialect.dialect()
    params: dict = {"worker": "w", "limit": 1}
    sql = claims._claim_sql(
        d,
        params,
        ["default"],
        [],
        ["tests.add", "tests.flow_one"],
        10,
        report_keys=True,
        keyed=False,
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + sql, params)
        shown = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        transaction.set_rollback(True)
    print(shown)
    assert [row[1] for row in rows if row[1] is not None] == ["tests.add"]  # one plain run
    assert any(all(value is None for value in row) for row in rows)  # "keyed runs left"
    slot_counts = [line for line in shown.splitlines() if "on durable_run busy" in line]
    assert slot_counts and all("never executed" in line for line in slot_counts), shown
