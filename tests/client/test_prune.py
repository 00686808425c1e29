"""durable.prune(): what goes with a pruned run, what only loses its name, and batches."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import models
from django.db.models.signals import post_delete
from django.utils import timezone

import django_durable as durable
from django_durable.models import (
    Callback,
    Event,
    Message,
    Run,
    RunStatus,
    RunToken,
    RunValue,
    Step,
    StreamItem,
    WakeKey,
)
from django_durable.store import pruning

pytestmark = pytest.mark.django_db(transaction=True)

OWNED = (Step, RunValue, StreamItem, Message, RunToken, WakeKey, Callback)


def finished_run(days: float = 8, **fields: object) -> Run:
    """A run that completed ``days`` ago."""
    ended = timezone.now() - timedelta(days=days)
    return Run.objects.create(
        workflow_name="tests.add",
        status=RunStatus.COMPLETED,
        created_at=ended,
        finished_at=ended,
        **fields,
    )


def belongings(run: Run, index: int = 0) -> None:
    """One row of each kind a run owns."""
    later = timezone.now() + timedelta(days=1)
    Step.objects.create(run=run, position=0, kind="step", name="s", status="completed")
    RunValue.objects.create(run=run, key="progress", value=1, position=1)
    StreamItem.objects.create(run=run, key="log", offset=0, value="x", position=2)
    Message.objects.create(run=run, topic="approve", data=True)
    RunToken.objects.create(run=run, selector=f"sel{index}", digest="d", expires_at=later)
    WakeKey.objects.create(run=run, key=f"e:paid{index}")
    Callback.objects.create(run=run, position=3)


def test_the_rows_a_run_owns_go_with_it_and_the_rows_naming_it_stay():
    old, kept = finished_run(), finished_run(days=0)
    belongings(old, 0)
    belongings(kept, 1)
    # A child still running and a fork of the old run outlive it; so does an event it emitted.
    child = Run.objects.create(workflow_name="tests.add", status=RunStatus.RUNNING, parent=old)
    fork = finished_run(days=0, forked_from=old)
    event = Event.objects.create(name="paid", run=old)

    assert durable.prune(older_than=timedelta(days=7)).runs == 1

    assert list(Run.objects.filter(pk=old.pk)) == []
    for model in OWNED:
        assert not model.objects.filter(run_id=old.pk).exists(), model.__name__
        assert model.objects.filter(run_id=kept.pk).count() == 1, model.__name__
    child.refresh_from_db()
    fork.refresh_from_db()
    event.refresh_from_db()
    assert (child.parent_id, child.status) == (None, RunStatus.RUNNING)
    assert fork.forked_from_id is None
    assert event.run_id is None


def test_every_relation_of_a_run_is_one_that_pruning_knows():
    """A new model pointing at runs must say what a prune does with its rows."""
    owned, naming = set(), set()
    for relation in Run._meta.related_objects:
        field = relation.field
        place = (relation.related_model._meta.db_table, field.column)
        if relation.on_delete is models.CASCADE:
            owned.add(place)
            # Rows pointing at an owned row would be left behind: pruning deletes by run.
            assert not relation.related_model._meta.related_objects, place
        else:
            assert relation.on_delete is models.SET_NULL, place
            naming.add(place)
    assert owned == set(pruning.OWNED)
    assert naming == set(pruning.NAMING)


def test_batches_larger_than_an_in_list_delete_every_run():
    runs = Run.objects.bulk_create(
        Run(
            workflow_name="tests.add",
            status=RunStatus.FAILED,
            finished_at=timezone.now() - timedelta(days=2),
        )
        for _ in range(pruning.SQLITE_CHUNK + 7)
    )
    Step.objects.bulk_create(
        Step(run=run, position=0, kind="step", name="s", status="completed") for run in runs
    )
    assert durable.prune(older_than=86400, batch_size=1000).runs == len(runs)
    assert not Run.objects.exists()
    assert not Step.objects.exists()


def test_receivers_of_delete_signals_still_hear_of_pruned_rows():
    old = finished_run()
    belongings(old)
    heard: list[str] = []

    def receiver(sender: type, instance: models.Model, **kwargs: object) -> None:
        heard.append(f"{sender.__name__} {instance.pk}")

    post_delete.connect(receiver, sender=Step, weak=False)
    try:
        assert durable.prune(older_than=timedelta(days=7)).runs == 1
    finally:
        post_delete.disconnect(receiver, sender=Step)
    assert len(heard) == 1
    assert heard[0].startswith("Step ")
    assert not Step.objects.exists()


def test_a_prune_deletes_what_was_old_enough_when_it_began_not_what_ages_meanwhile():
    """The cutoff is read once: a run that passes the age while a long prune goes on stays
    (and a dry run counts what the prune then deletes)."""
    for _ in range(4):
        finished_run(days=2)
    almost = finished_run(days=1 - 1 / 86400)  # a second short of a day old
    slow = 0.4  # each batch waits, so the prune lasts longer than that second

    def receiver(sender: type, instance: models.Model, **kwargs: object) -> None:
        time.sleep(slow)

    post_delete.connect(receiver, sender=Run, weak=False)
    try:
        assert durable.prune(older_than=timedelta(days=1), dry_run=True).runs == 4
        assert durable.prune(older_than=timedelta(days=1), batch_size=1).runs == 4
    finally:
        post_delete.disconnect(receiver, sender=Run)
    assert list(Run.objects.values_list("pk", flat=True)) == [almost.pk]


def test_a_prune_waits_after_each_batch_twice_the_batch_or_as_asked(monkeypatch):
    """``pause=`` leaves the database to the workers between batches: by default twice as
    long as each batch took, as long as asked otherwise, and not at all with 0."""
    from django_durable.client import operating

    for _ in range(5):
        finished_run()
    Event.objects.create(name="old", created_at=timezone.now() - timedelta(days=8))
    slept: list[float] = []
    monkeypatch.setattr(operating.time, "sleep", slept.append)
    assert durable.prune(older_than=timedelta(days=7), batch_size=2, pause=0).runs == 5
    assert slept == []
    for _ in range(5):
        finished_run()
    pruned = durable.prune(older_than=timedelta(days=7), batch_size=2, pause=0.25)
    assert pruned.runs == 5
    assert slept == [0.25] * 3  # after each of the 3 batches of runs (no events left)
    slept.clear()
    for _ in range(5):
        finished_run()
    assert async_to_sync(durable.aprune)(older_than=7 * 86400, batch_size=2, pause=0.5).runs == 5
    assert slept == [0.5] * 3  # aprune passes its pause on
    slept.clear()
    for _ in range(5):
        finished_run()
    assert durable.prune(older_than=timedelta(days=7), batch_size=2).runs == 5
    assert len(slept) == 3 and all(0 < wait < 1 for wait in slept), slept


def test_the_default_pause_is_twice_the_batch_and_at_most_a_minute(monkeypatch):
    from django_durable.client import operating

    now = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(operating.time, "sleep", slept.append)
    pace = operating._Pace(None, clock=lambda: now[0])
    now[0] += 0.2  # a batch of 0.2 s
    pace.rest()
    now[0] += 0.05 + 45  # the wait, then a batch of 45 s
    slept_so_far = list(slept)
    pace.rest()
    assert slept_so_far == [pytest.approx(0.4)]
    assert slept[1] == operating.MAX_PAUSE


@pytest.mark.parametrize(
    ("pause", "error"),
    [(-1, ValueError), (60, ValueError), (float("nan"), ValueError), ("1", TypeError)],
)
def test_a_pause_that_is_not_a_sane_number_of_seconds_is_refused(pause, error):
    finished_run()
    with pytest.raises(error, match="pause="):
        durable.prune(older_than=timedelta(days=7), pause=pause)
    assert Run.objects.count() == 1
