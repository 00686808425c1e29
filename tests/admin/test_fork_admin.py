"""Forks in the admin: the "Fork from a step" button, "forked from" and the list of forks,
and finding a run by its idempotency key."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

import django_durable as durable
from django_durable.models import Run
from django_durable.testing import run_until_finished
from tests.testapp import fork_workflows as fw
from tests.testapp import workflows as wf

from .test_run_page import change_url, followed, press_url, staff_with, text

pytestmark = pytest.mark.django_db(transaction=True)


def failed_run() -> durable.RunHandle:
    fw.BUG["on"] = True
    try:
        handle = fw.fork_orders.start("o-1")
        run_until_finished(handle)
    finally:
        fw.BUG["on"] = False
    return handle


def test_the_button_offers_the_failed_step_and_forks_from_it(client, superuser):
    original = failed_run()
    position = original.error["position"]
    page = text(client.get(change_url(original.id)))
    assert "<h3>Fork from a step</h3>" in page
    assert f'name="from_step" value="{position}"' in page
    answer = client.post(press_url(original.id, "fork"), {"from_step": str(position)}, follow=True)
    fork = Run.objects.get(forked_from_id=original.id)
    assert f"Forked from step {position} ({position} operations copied)" in followed(answer)
    assert str(fork.pk) in followed(answer)
    entry = LogEntry.objects.get(object_id=original.id)
    assert entry.get_change_message() == f"Forked from step {position}: run {fork.pk}."
    # The original lists its fork; the fork says where it comes from.
    assert change_url(str(fork.pk)) in text(client.get(change_url(original.id)))
    fork_page = text(client.get(change_url(str(fork.pk))))
    assert "forked from" in fork_page.lower() and change_url(original.id) in fork_page
    assert "<h3>Fork from a step</h3>" not in fork_page  # pending: nothing to fork yet


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ("", "the step must be a whole number from 0"),
        ("-1", "the step must be a whole number from 0"),
        ("x", "the step must be a whole number from 0"),
        ("99", "recorded 13 operations"),
    ],
)
def test_a_bad_step_is_refused_in_words(client, superuser, step, words):
    original = failed_run()
    answer = client.post(press_url(original.id, "fork"), {"from_step": step}, follow=True)
    assert words in followed(answer)
    assert not Run.objects.filter(forked_from_id=original.id).exists()


def test_operate_run_does_not_give_the_fork_button(client):
    staff_with(client, "view_run", "operate_run")
    original = failed_run()
    assert "<h3>Fork from a step</h3>" not in text(client.get(change_url(original.id)))
    answer = client.post(press_url(original.id, "fork"), {"from_step": "0"}, follow=True)
    assert "you need the permission django_durable.fork_run" in followed(answer)
    assert not Run.objects.filter(forked_from_id=original.id).exists()


def test_a_run_that_has_not_finished_has_no_fork_button(client, superuser):
    handle = wf.add.start(1, 2)
    assert "<h3>Fork from a step</h3>" not in text(client.get(change_url(handle.id)))
    answer = client.post(press_url(handle.id, "fork"), {"from_step": "0"}, follow=True)
    assert "Fork does not apply to a run that is pending" in followed(answer)


def test_many_forks_are_listed_up_to_a_limit_with_a_link_to_all(client, superuser):
    original = failed_run()
    for _ in range(52):
        durable.fork(original.id, from_step=0)
    page = text(client.get(change_url(original.id)))
    assert "The first 50 of 52 forks." in page
    every = client.get(
        reverse("admin:django_durable_run_changelist"), {"forked_from__id__exact": original.id}
    )
    assert every.status_code == 200
    assert every.context["cl"].result_count == 52


def test_the_list_finds_a_run_by_its_idempotency_key(client, superuser):
    handle = wf.add.using(idempotency_key="order-42").start(1, 2)
    wf.add.start(1, 2)
    listed = client.get(reverse("admin:django_durable_run_changelist"), {"q": "order-42"})
    assert [str(run.pk) for run in listed.context["cl"].result_list] == [handle.id]
