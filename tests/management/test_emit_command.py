"""``durable emit``: which event it stored, and how many waiting runs it woke."""

from __future__ import annotations

import json

import pytest

from django_durable.models import Event, Run, RunStatus
from django_durable.testing import run_ready
from tests.management.calls import durable_cmd
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waiting():
    """Two runs waiting for ``approved:7``, one for another event, one for a message so named."""
    runs = {
        "a": wf.waits_event.start("approved:7"),
        "b": wf.waits_event.start("approved:7"),
        "other": wf.waits_event.start("approved:8"),
        "message": wf.receives.start(1, "approved:7"),
    }
    run_ready()
    assert {handle.refresh().status for handle in runs.values()} == {RunStatus.WAITING}
    return runs


def statuses(runs) -> dict[str, str]:
    return {name: handle.refresh().status for name, handle in runs.items()}


def test_emit_says_which_event_it_stored_and_how_many_runs_it_woke(waiting):
    output = durable_cmd("emit", "approved:7", '{"by": "ada"}')
    event = Event.objects.get(name="approved:7")
    assert output == f"Emitted event {event.pk} (approved:7): woke 2 runs.\n"
    assert statuses(waiting) == {
        "a": "pending", "b": "pending", "other": "waiting", "message": "waiting"
    }  # fmt: skip
    run_ready()
    assert durable_cmd("emit", "approved:7").endswith("(approved:7): woke 0 runs.\n")


def test_emit_says_one_run_and_as_json(waiting):
    data = json.loads(durable_cmd("emit", "approved:8", "--json", "--source", "cli"))
    event = Event.objects.get(name="approved:8")
    assert data == {"id": event.pk, "name": "approved:8", "stored": True, "woken": 1}
    assert durable_cmd("emit", "nobody.waits").endswith("(nobody.waits): woke 0 runs.\n")


def test_an_emission_repeated_with_its_key_stores_nothing_and_wakes_no_run(waiting):
    first = json.loads(durable_cmd("emit", "approved:7", "--idempotency-key", "k", "--json"))
    assert first["stored"] is True and first["woken"] == 2
    # A run waiting again for that name (for an event newer than the first): the repeated
    # emission must not claim to wake it, nor wake it.
    again = wf.waits_twice.start("approved:7")
    run_ready()
    assert again.refresh().status == RunStatus.WAITING
    second = json.loads(durable_cmd("emit", "approved:7", "--idempotency-key", "k", "--json"))
    assert second == {**first, "stored": False, "woken": 0}
    assert again.refresh().status == RunStatus.WAITING
    text = durable_cmd("emit", "approved:7", "--idempotency-key", "k")
    assert text == (
        f"Event {first['id']} (approved:7) was emitted before with this idempotency key: "
        "stored nothing, woke no run.\n"
    )
    assert durable_cmd("emit", "approved:7").endswith(": woke 1 run.\n")


def test_the_count_is_of_the_runs_it_woke_not_of_those_still_waiting(waiting):
    # A run waiting for the name is woken: none waits for it after the emission.
    durable_cmd("emit", "approved:7")
    assert not Run.objects.filter(status=RunStatus.WAITING, wake_on="e:approved:7").exists()
