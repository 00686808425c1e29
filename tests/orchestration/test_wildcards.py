"""Wildcard triggers: trigger_on_event="tests/orders/*" (one segment) and ".../**" (any depth).

The workflows are in tests/testapp/workflows.py, so that worker processes know them too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

import django_durable as durable
from django_durable.declarations import registry
from django_durable.models import Run, RunStatus, TriggerDelivery
from django_durable.orchestration import triggers
from django_durable.testing import run_all, skip, time_machine
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ANY_DEPTH = "tests.on_orders_any_depth"  # tests/orders/**
ONE_SEGMENT = "tests.on_orders_one_segment"  # tests/orders/*
BATCH = "tests.on_regions_batch"  # tests/regions/*/created, batches of 3, 1 h


def delivered(event_id: int) -> list[str]:
    rows = TriggerDelivery.objects.filter(event_id=event_id).order_by("workflow_name")
    return list(rows.values_list("workflow_name", flat=True))


def results(name: str) -> list[list[str]]:
    runs = Run.objects.filter(workflow_name=name).order_by("created_at", "id")
    return [durable.get_run(run.id).result(timeout=1) for run in runs]


def test_star_matches_one_segment_and_double_star_any_depth():
    deep = durable.emit_event("tests/orders/eu/created")
    shallow = durable.emit_event("tests/orders/created")
    bare = durable.emit_event("tests/orders")  # "**" is one segment or more
    assert delivered(deep) == [ANY_DEPTH]
    assert delivered(shallow) == [ANY_DEPTH, ONE_SEGMENT]
    assert delivered(bare) == []
    run_all()
    assert results(ANY_DEPTH) == [["tests/orders/eu/created"], ["tests/orders/created"]]
    assert results(ONE_SEGMENT) == [["tests/orders/created"]]
    assert not TriggerDelivery.objects.exists()


def test_exact_triggers_are_matched_as_before_next_to_patterns():
    event_id = durable.emit_event("tests/order", 1)  # tests.on_order, exactly
    assert delivered(event_id) == ["tests.on_order"]
    empty_segment = durable.emit_event("tests/orders/")
    assert delivered(empty_segment) == []  # no pattern matches it


def test_a_batch_groups_the_workflows_events_whatever_their_concrete_names():
    eu = durable.emit_event("tests/regions/eu/created", {"n": 1})
    other = durable.emit_event("tests/regions/eu/deleted", {"n": 2})  # not this pattern
    us = durable.emit_event("tests/regions/us/created", {"n": 3})
    assert delivered(other) == []
    assert triggers.dispatch_triggers() == 0  # two of three: the batch waits
    eu_again = durable.emit_event("tests/regions/eu/created", {"n": 4})
    assert triggers.dispatch_triggers() == 1
    [run] = Run.objects.filter(workflow_name=BATCH)
    [payload], _ = run.get_input()
    assert [event["id"] for event in payload["events"]] == [eu, us, eu_again]
    assert run.idempotency_key == f"trigger:{BATCH}:{eu}"
    run_all()
    assert results(BATCH) == [
        ["tests/regions/eu/created", "tests/regions/us/created", "tests/regions/eu/created"]
    ]


def test_a_partial_wildcard_batch_starts_after_batch_timeout_on_the_test_clock():
    with time_machine():
        first = durable.emit_event("tests/regions/eu/created")
        second = durable.emit_event("tests/regions/us/created")
        skip(timedelta(minutes=59))
        assert triggers.dispatch_triggers() == 0
        skip(timedelta(minutes=1, seconds=1))
        assert triggers.dispatch_triggers() == 1
    [run] = Run.objects.filter(workflow_name=BATCH)
    [payload], _ = run.get_input()
    assert [event["id"] for event in payload["events"]] == [first, second]


def test_the_index_is_built_once_and_a_workflow_declared_later_is_matched():
    registry.triggered_by("tests/orders/created")
    built = registry._triggers
    registry.triggered_by("tests/orders/eu/created")
    assert registry._triggers is built  # no rebuild, and no scan of the registry

    @durable.workflow(name="tests.late_wildcard", trigger_on_event="tests/late/*")
    def late(ctx, payload):
        return None

    try:
        assert registry.triggered_by("tests/late/x") == [late]
        assert registry.triggered_by("tests/late/x/y") == []
    finally:
        registry.unregister("tests.late_wildcard")
    assert registry.triggered_by("tests/late/x") == []


def test_matching_reads_the_index_not_the_registry(monkeypatch):
    registry.triggered_by("tests/order")  # built

    class NoScan(dict):
        def values(self):
            raise AssertionError("an emission scanned every workflow")

    monkeypatch.setattr(registry, "_workflows", NoScan(registry._workflows))
    assert [wf.name for wf in registry.triggered_by("tests/orders/a")] == [
        ANY_DEPTH,
        ONE_SEGMENT,
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("tests/orders/*x", "mixes a wildcard with text"),
        ("**", "has no literal segment"),
        ("tests//*", "has an empty segment"),
        ("tests/**/created", "must be the last segment"),
    ],
)
def test_a_bad_pattern_is_an_error_at_declaration(pattern, message):
    def handler(ctx, payload):
        return None

    with pytest.raises(ValueError, match=message):
        durable.workflow(name="tests.bad_pattern", trigger_on_event=pattern)(handler)
    assert "tests.bad_pattern" not in registry.registered_workflows()


@pytest.mark.slow
def test_a_worker_process_starts_the_double_star_workflow_and_not_the_star_one(
    worker_processes,
):
    worker_processes.start("--poll-interval", "0.1")
    durable.emit_event("tests/orders/eu/created", {"order": 1})

    def done() -> bool:
        runs = Run.objects.filter(workflow_name=ANY_DEPTH, status=RunStatus.COMPLETED)
        return runs.exists()

    wait_for(done, 30, f"the ** workflow completed\n{worker_processes.logs()}")
    wait_for(lambda: not Run.objects.active().exists(), 10, "no run left active")
    assert results(ANY_DEPTH) == [["tests/orders/eu/created"]]
    assert not Run.objects.filter(workflow_name=ONE_SEGMENT).exists()
    assert not TriggerDelivery.objects.exists()
