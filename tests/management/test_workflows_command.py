"""``durable workflows``: the registered workflows and how each is declared."""

from __future__ import annotations

import json

import pytest

import django_durable as durable
from django_durable.declarations.registry import registered_workflows, unregister
from tests.management.calls import durable_cmd

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def declared():
    """A workflow declared with every option the command shows."""

    @durable.workflow(
        name="cli.everything",
        queue="single",
        max_attempts=4,
        timeout=90,
        on_timeout="cancel",
        http_start=True,
        schedule="*/15 * * * *",
        schedule_timezone="Europe/Paris",
    )
    def everything(ctx: durable.Context) -> None:
        pass

    @durable.workflow(
        name="cli.batched", trigger_on_event="cli/orders", batch_size=5, batch_timeout=60
    )
    async def batched(ctx: durable.AsyncContext, payload: dict) -> None:
        pass

    yield
    unregister("cli.everything")
    unregister("cli.batched")


def test_workflows_lists_every_registered_workflow_by_name(declared):
    lines = durable_cmd("workflows").splitlines()
    assert lines[0].split() == [
        "NAME", "QUEUE", "ATTEMPTS", "TIMEOUT", "SCHEDULE", "TRIGGER", "HTTP", "START"
    ]  # fmt: skip
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(registered_workflows()) and "tests.add" in names
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["cli.everything"].split() == [
        "cli.everything", "single", "4", "1m", "30s,", "cancel", "*/15", "*", "*", "*", "*",
        "(Europe/Paris)", "-", "yes",
    ]  # fmt: skip
    assert rows["cli.batched"].split() == [
        "cli.batched", "default", "1", "-", "-", "cli/orders", "(batches", "of", "5,", "1m",
        "00s)", "no",
    ]  # fmt: skip
    assert rows["tests.add"].split() == ["tests.add", "default", "1", "-", "-", "-", "no"]


def test_workflows_json(declared, settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "DEFAULT_QUEUE": "main"}
    data = {item["name"]: item for item in json.loads(durable_cmd("workflows", "--json"))}
    assert list(data) == sorted(registered_workflows())
    assert data["cli.everything"] == {
        "name": "cli.everything",
        "queue": "single",
        "max_attempts": 4,
        "timeout_seconds": 90.0,
        "on_timeout": "cancel",
        "schedule": {"cron": "*/15 * * * *", "time_zone": "Europe/Paris", "missed_ticks": "skip"},
        "trigger": None,
        "http_start": True,
        "is_async": False,
    }
    batched = data["cli.batched"]
    assert batched["trigger"] == {
        "event": "cli/orders", "batch_size": 5, "batch_timeout_seconds": 60.0
    }  # fmt: skip
    assert batched["queue"] == "main" and batched["schedule"] is None and batched["is_async"]
    assert data["tests.http_receives"]["http_start"] is True
    assert data["tests.add"]["http_start"] is False and data["tests.add"]["timeout_seconds"] is None
