"""Declaring workflows and steps, finding them by name, and settings."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

import django_durable as durable
from django_durable import registry
from django_durable.conf import get_settings
from django_durable.retry_policy import RetryPolicy
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


def test_retry_policy_backoff_cap_and_jitter():
    policy = RetryPolicy(max_attempts=5, initial_delay=1, backoff=2, max_delay=5, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    jittered = RetryPolicy(initial_delay=10, jitter=0.5)
    assert all(5 <= jittered.delay(1) <= 15 for _ in range(50))
    assert policy.delay(1, durable.RetryableError(retry_after=42)) == 42


def test_retry_policy_decides_what_is_retried():
    policy = RetryPolicy(max_attempts=3, retry_on=(ConnectionError,))
    assert policy.should_retry(ConnectionError(), 1)
    assert not policy.should_retry(ConnectionError(), 3)  # out of attempts
    assert not policy.should_retry(ValueError(), 1)  # not in retry_on
    assert policy.should_retry(durable.RetryableError(), 1)  # always worth retrying
    assert not policy.should_retry(durable.FatalError(), 1)
    assert not policy.should_retry(durable.NonDeterministicWorkflow(), 1)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_delay": -1}, {"backoff": 0.5}, {"jitter": 2}],
)
def test_retry_policy_validates(kwargs):
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)


def test_settings_defaults_and_reset_on_change(settings):
    assert get_settings().POLL_INTERVAL == 0.1  # tests/settings.py
    settings.DJANGO_DURABLE = {"LEASE_SECONDS": 90}
    conf = get_settings()
    assert conf.LEASE_SECONDS == 90
    assert conf.heartbeat_interval == 30
    assert conf.POLL_INTERVAL == 1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"POLL_INTERVALL": 1}, "Unknown DJANGO_DURABLE key"),
        ({"LEASE_SECONDS": 0}, "must be greater than 0"),
        ({"HEARTBEAT_INTERVAL": 40, "LEASE_SECONDS": 30}, "between 0 and LEASE_SECONDS"),
        ({"MAX_RECOVERIES": -1}, "cannot be negative"),
        ({"MAX_CHILD_DEPTH": -1}, "MAX_CHILD_DEPTH'] must be a whole number"),
        ({"MAX_CHILD_DEPTH": 2.5}, "MAX_CHILD_DEPTH'] must be a whole number"),
        ({"DEFAULT_STEP_RETRY": 3}, "must be a dict"),
        ([1], "must be a dict"),
    ],
)
def test_bad_settings_are_improperly_configured(settings, value, message):
    settings.DJANGO_DURABLE = value
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_system_check_warns_about_sqlite_without_immediate_transactions(settings):
    from django_durable.checks import check_database

    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        assert check_database() == []
        options = settings.DATABASES["default"]["OPTIONS"]
        settings.DATABASES["default"]["OPTIONS"] = {}
        try:
            from django.db import connections

            connections["default"].settings_dict["OPTIONS"] = {}
            [warning] = check_database()
            assert warning.id == "django_durable.W001"
        finally:
            connections["default"].settings_dict["OPTIONS"] = options
    else:
        assert check_database() == []
    settings.DJANGO_DURABLE = {"DATABASE": "missing"}
    [error] = check_database()
    assert error.id == "django_durable.E001"


def test_manage_py_check_passes():
    call_command("check", "--fail-level", "WARNING")


def test_an_invalid_default_step_retry_fails_at_settings_load(settings):
    settings.DJANGO_DURABLE = {"DEFAULT_STEP_RETRY": {"max_attempt": 3}}
    with pytest.raises(ImproperlyConfigured, match="not a valid RetryPolicy"):
        get_settings()
    settings.DJANGO_DURABLE = {"DEFAULT_STEP_RETRY": {"max_attempts": 0}}
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        get_settings()


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


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("x" * 201, "not '" + "x" * 60 + "…'."),
        ("", "not ''."),
        (42, "not a value of type int."),
    ],
)
def test_a_bad_name_is_shown_shortened_and_quoted(name, shown):
    with pytest.raises(ValueError, match=r"^A step name must be a non-empty string") as refused:
        registry.check_name(name, "step")
    assert str(refused.value).endswith(shown)
