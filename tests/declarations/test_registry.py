"""Declaring workflows and steps, and finding them by name."""

from __future__ import annotations

import datetime as dt

import pytest

import django_durable as durable
from django_durable import RetryPolicy
from django_durable.declarations import registry
from tests.testapp import workflows as wf


def test_workflows_are_discovered_from_installed_apps_workflows_modules():
    names = registry.registered_workflows()
    assert names["tests.add"] is wf.add
    assert isinstance(wf.add, durable.Workflow)
    assert wf.add.name == "tests.add"
    assert wf.workflow_retry.max_attempts == 3
    assert wf.async_add.is_async and not wf.add.is_async


def test_a_workflow_object_calls_the_plain_function():
    class FakeContext:
        def step(self, name, fn, *args):
            return fn(*args)

    assert wf.add(FakeContext(), 2, 3) == 5


def test_the_default_name_is_the_dotted_path():
    def local(ctx):
        return None

    try:
        declared = durable.workflow(local)
        assert declared.name.endswith("test_the_default_name_is_the_dotted_path.<locals>.local")
        assert (
            durable.workflow(name="tests.custom", max_attempts=2, timeout=dt.timedelta(minutes=1))(
                local
            ).timeout
            == 60
        )
    finally:
        registry.unregister(declared.name)
        registry.unregister("tests.custom")


def test_a_name_registered_twice_by_different_functions_is_an_error():
    def first(ctx):
        return 1

    def second(ctx):
        return 2

    durable.workflow(name="tests.twice")(first)
    try:
        with pytest.raises(durable.DurableError, match="registered twice"):
            durable.workflow(name="tests.twice")(second)
        # Registering the same function again (a module re-imported) is fine.
        durable.workflow(name="tests.twice")(first)
    finally:
        registry.unregister("tests.twice")


def test_an_unknown_name_is_workflow_not_found_with_a_hint():
    with pytest.raises(durable.WorkflowNotFound, match="'workflows' module") as raised:
        registry.get_workflow("no.such")
    assert isinstance(raised.value, LookupError)


@pytest.mark.parametrize("name", ["", "x" * 201, 5])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="non-empty string"):
        durable.workflow(name=name)(lambda ctx: None)


def test_negative_or_nan_timeouts_are_refused():
    with pytest.raises(ValueError, match="cannot be negative"):
        durable.workflow(name="tests.neg", timeout=-1)(lambda ctx: None)
    with pytest.raises(ValueError, match="A workflow timeout must be a number of seconds, not NaN"):
        durable.workflow(name="tests.nan", timeout=float("nan"))(lambda ctx: None)
    with pytest.raises(ValueError, match="batch_timeout must be a number of seconds, not NaN"):
        durable.workflow(
            name="tests.nan_batch", trigger_on_event="x", batch_size=2, batch_timeout=float("nan")
        )(lambda ctx, payload: None)


def test_step_decorator_keeps_options():
    policy = RetryPolicy(max_attempts=3)

    @durable.step(name="charge", retry=policy, atomic=True)
    def charge(amount):
        return amount

    assert (charge.name, charge.retry, charge.atomic) == ("charge", policy, True)
    assert charge(5) == 5  # outside a workflow: a plain call


@pytest.mark.parametrize("cron", ["0 * * * * *", "0 0 * * * 2030", "nope", "61 * * * *"])
def test_declared_schedules_take_five_cron_fields_like_the_admin(cron):
    with pytest.raises(ValueError, match="is not a cron expression"):
        durable.workflow(name="tests.bad_schedule", schedule=cron)(lambda ctx, scheduled_time: None)
    assert "tests.bad_schedule" not in registry.registered_workflows()


def test_a_declared_schedule_needs_a_known_time_zone():
    with pytest.raises(ValueError, match="is not a known time zone"):
        durable.workflow(name="tests.bad_zone", schedule="@daily", schedule_timezone="Mars/Base")(
            lambda ctx, scheduled_time: None
        )
