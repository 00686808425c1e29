"""A run's admin page as a support desk: its summary, timeline, steps, buttons and live view."""

from __future__ import annotations

import html

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

import django_durable as durable
from django_durable.models import Event, Message, RunStatus
from django_durable.testing import run_all, run_ready, run_until_finished
from tests.conftest import ROOT
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def change_url(run_id: str) -> str:
    return reverse("admin:django_durable_run_change", args=[run_id])


def press_url(run_id: str, name: str) -> str:
    return reverse("admin:django_durable_run_press", args=[run_id, name])


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


def staff_with(client, *codenames: str) -> User:
    user = User.objects.create_user("helpdesk", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_durable", codename=codename)
        )
    client.force_login(user)
    return user


def followed(response) -> str:
    """The messages the page shows after a button's redirect."""
    return " ".join(str(message) for message in response.context["messages"])


def test_the_page_of_a_run_waiting_for_an_event_says_so_and_offers_what_applies(client, superuser):
    handle = wf.waits_event.start("payment.confirmed:1042", timeout=3600)
    run_ready()
    page = text(client.get(change_url(handle.id)))
    assert "Waiting for event <code>payment.confirmed:1042</code> since" in page
    assert "times out" in page
    assert 'class="durable-timeline"' in page and 'role="img"' in page  # the timeline
    # What answers the wait first, what ends the run last.
    order = ("Emit an event", "Wake now", "Send a message", "Cancel")
    assert [page.index(f"<h3>{label}</h3>") for label in order] == sorted(
        page.index(f"<h3>{label}</h3>") for label in order
    )
    assert "<h3>Retry</h3>" not in page  # only failed or cancelled runs
    assert 'name="name" value="payment.confirmed:1042"' in page  # pre-filled
    assert '"floor"' not in page  # a wait's bookkeeping is never shown as a result


def test_emit_from_the_page_wakes_the_run_and_is_in_the_history(client, superuser):
    handle = wf.waits_event.start("payment.confirmed:7")
    run_ready()
    form = {"name": "payment.confirmed:7", "data": '{"amount": 42}'}
    answer = client.post(press_url(handle.id, "emit"), form, follow=True)
    assert "emitted" in followed(answer)
    event = Event.objects.get(name="payment.confirmed:7")
    assert (event.get_data(), event.source) == ({"amount": 42}, "admin")
    run_all()
    assert handle.result(timeout=1)["data"] == {"amount": 42}
    entry = LogEntry.objects.get(object_id=handle.id)
    assert entry.user == superuser and '"amount": 42' in entry.get_change_message()


def test_send_with_bad_json_says_why_and_stores_nothing(client, superuser):
    handle = wf.receives.start(1, "approval")
    run_ready()
    page = text(client.get(change_url(handle.id)))
    assert 'name="topic" value="approval"' in page
    answer = client.post(
        press_url(handle.id, "send"), {"topic": "approval", "message": "{yes"}, follow=True
    )
    assert "The message is not valid JSON" in followed(answer)
    assert not Message.objects.exists()
    assert not LogEntry.objects.exists()
    answer = client.post(
        press_url(handle.id, "send"), {"topic": "approval", "message": '"yes"'}, follow=True
    )
    assert "sent on topic approval" in followed(answer)
    run_all()
    assert handle.result(timeout=1) == ["yes"]


def test_wake_cancel_and_retry(client, superuser):
    napper = wf.sleeper.start(3600)
    doomed = wf.sleeper.start(3600)
    failed = wf.fatal.start()
    run_ready()
    assert "its sleep ended" in followed(client.post(press_url(napper.id, "wake"), follow=True))
    run_ready()
    assert napper.result(timeout=1) == "woke"
    answer = client.post(press_url(doomed.id, "cancel"), {"reason": "customer left"}, follow=True)
    assert "Cancelled" in followed(answer)
    run_all()
    assert doomed.refresh().status == RunStatus.CANCELLED
    assert doomed.model.cancel_reason == "customer left"
    assert "Retried" in followed(client.post(press_url(failed.id, "retry"), follow=True))
    assert failed.refresh().status == RunStatus.PENDING
    assert LogEntry.objects.count() == 3


def test_a_button_that_does_not_apply_is_not_shown_and_refused_in_words(client, superuser):
    handle = wf.add.start(1, 2)
    run_all()
    page = text(client.get(change_url(handle.id)))
    for label in ("Cancel", "Wake now", "Send a message", "Emit an event", "Retry"):
        assert f"<h3>{label}</h3>" not in page
    answer = client.post(press_url(handle.id, "cancel"), {"reason": "x"}, follow=True)
    assert "Cancel does not apply to a run that is completed" in followed(answer)
    assert handle.refresh().status == RunStatus.COMPLETED


def test_each_button_has_its_own_permission(client):
    staff_with(client, "view_run", "wake_run")
    napper = wf.sleeper.start(3600)
    run_ready()
    page = text(client.get(change_url(napper.id)))
    assert "<h3>Wake now</h3>" in page
    assert "<h3>Cancel</h3>" not in page and "<h3>Emit an event</h3>" not in page
    refused = client.post(press_url(napper.id, "cancel"), {"reason": "no"}, follow=True)
    assert "you need the permission django_durable.cancel_run" in followed(refused)
    assert napper.refresh().status == RunStatus.WAITING
    assert "its sleep ended" in followed(client.post(press_url(napper.id, "wake"), follow=True))


def test_view_permission_alone_shows_the_page_without_buttons(client):
    staff_with(client, "view_run")
    handle = wf.sleeper.start(3600)
    run_ready()
    page = text(client.get(change_url(handle.id)))
    assert "Sleeping until" in page and "durable-button" not in page


def test_staff_without_view_permission_get_nothing(client):
    staff_with(client)
    handle = wf.sleeper.start(3600)
    run_ready()
    assert client.get(change_url(handle.id)).status_code == 403
    live = reverse("admin:django_durable_run_live", args=[handle.id])
    assert client.get(live).status_code == 403
    assert client.post(press_url(handle.id, "wake")).status_code == 403
    assert handle.refresh().status == RunStatus.WAITING


def test_owning_a_run_gives_no_way_in_to_the_admin(client):
    """The admin is for staff: a customer who owns a run is refused its page and buttons;
    owning a run gives staff no button the permissions do not give."""
    customer = User.objects.create_user("customer")
    theirs = wf.sleeper.using(owner=customer).start(3600)
    run_ready()
    client.force_login(customer)
    for response in (
        client.get(change_url(theirs.id)),
        client.post(press_url(theirs.id, "cancel"), {"reason": "mine"}),
        client.get(reverse("admin:django_durable_run_live", args=[theirs.id])),
    ):
        assert response.status_code == 302 and "/login/" in response["Location"]
    staff = staff_with(client, "view_run")
    own = wf.sleeper.using(owner=staff).start(3600)
    run_ready()
    assert "durable-button" not in text(client.get(change_url(own.id)))
    refused = client.post(press_url(own.id, "cancel"), {"reason": "mine"}, follow=True)
    assert "you need the permission django_durable.cancel_run" in followed(refused)
    assert theirs.refresh().status == own.refresh().status == RunStatus.WAITING


def test_the_live_view_gives_the_parts_that_change(client, superuser):
    handle = wf.sleeper.start(3600)
    run_ready()
    live = reverse("admin:django_durable_run_live", args=[handle.id])
    data = client.get(live).json()
    assert data["finished"] is False and data["status"] == "waiting"
    assert data["summary"].startswith("Sleeping until ")
    assert "<svg" in data["timeline"]
    durable.wake_now(handle.id)
    run_all()
    assert client.get(live).json()["finished"] is True


def test_steps_are_paginated_writes_folded_and_every_attempt_readable(client, superuser):
    long = wf.counted.start(120)
    flaky = wf.flaky.start(2)
    chatty = wf.http_receives.start("x")  # publishes progress: a value write
    run_ready()
    page = text(client.get(change_url(long.id)))
    assert "operations 1 to 50 of 120" in page
    last = text(client.get(change_url(long.id) + "?steps=3"))
    assert "operations 101 to 120 of 120" in last
    run_until_finished(flaky)
    tried = text(client.get(change_url(flaky.id)))
    assert "attempt 1: ConnectionError: try 1 failed" in tried
    assert "attempt 2: ConnectionError: try 2 failed" in tried
    folded = text(client.get(change_url(chatty.id)))
    assert "show the 1 value and stream writes" in folded
    unfolded = text(client.get(change_url(chatty.id) + "?writes=1"))
    assert "fold value and stream writes" in unfolded and ">value<" in unfolded


def test_the_guide_s_support_group_may_unstick_runs_but_not_cancel_them(client):
    """The groups of docs/howto/operating-runs.md, made by its own code."""
    guide = (ROOT / "docs" / "howto" / "operating-runs.md").read_text()
    code = guide.split("## Permissions for a support group", 1)[1].split("```python\n", 1)[1]
    exec(code.split("```", 1)[0], {})  # the guide's code, as a reader runs it
    helpdesk = User.objects.create_user("helpdesk", is_staff=True)
    helpdesk.groups.add(Group.objects.get(name="Support desk"))
    client.force_login(helpdesk)
    napper = wf.sleeper.start(3600)
    run_ready()
    page = text(client.get(change_url(napper.id)))
    for label in ("Emit an event", "Send a message", "Wake now"):
        assert f"<h3>{label}</h3>" in page
    assert "<h3>Cancel</h3>" not in page
    refused = client.post(press_url(napper.id, "cancel"), {"reason": "no"}, follow=True)
    assert "you need the permission django_durable.cancel_run" in followed(refused)
    assert "its sleep ended" in followed(client.post(press_url(napper.id, "wake"), follow=True))
    reader = User.objects.create_user("reader", is_staff=True)
    reader.groups.add(Group.objects.get(name="Workflow readers"))
    client.force_login(reader)
    assert "durable-button" not in text(client.get(change_url(napper.id)))
    operator = User.objects.create_user("operator", is_staff=True)
    operator.groups.add(Group.objects.get(name="Workflow operators"))
    client.force_login(operator)
    other = wf.sleeper.start(3600)
    run_ready()
    assert "<h3>Cancel</h3>" in text(client.get(change_url(other.id)))


# Each button, pressed by staff with only its permission, and by staff with all but it.
BUTTONS = {
    "cancel": ("cancel_run", {"reason": "asked"}, lambda run: run.cancel_requested_at is not None),
    "wake": ("wake_run", {}, lambda run: run.status == RunStatus.PENDING),
    "send": (
        "send_message",
        {"topic": "t", "message": "1"},
        lambda run: Message.objects.filter(run_id=run.pk).count() == 1,
    ),
    "emit": (
        "add_event",
        {"name": "only.this", "data": "{}"},
        lambda run: Event.objects.filter(name="only.this").count() == 1,
    ),
    "retry": ("retry_run", {}, lambda run: run.status == RunStatus.PENDING),
    "fork": ("fork_run", {"from_step": "0"}, lambda run: run.forks.exists()),
}
EVERY_BUTTON_PERMISSION = [permission for permission, _, _ in BUTTONS.values()]


def run_for(button: str):
    if button in ("retry", "fork"):
        handle = wf.boom.start()
        run_all()
    else:
        handle = wf.sleeper.start(3600)
        run_ready()
    return handle


@pytest.mark.parametrize("button", BUTTONS)
def test_each_button_works_with_its_own_permission_alone(client, button):
    permission, form, done = BUTTONS[button]
    staff_with(client, "view_run", permission)
    handle = run_for(button)
    answer = client.post(press_url(handle.id, button), form, follow=True)
    assert "you need the permission" not in followed(answer)
    assert done(handle.refresh().model)


@pytest.mark.parametrize("button", BUTTONS)
def test_each_button_is_refused_without_its_permission(client, button):
    permission, form, done = BUTTONS[button]
    others = [p for p in EVERY_BUTTON_PERMISSION if p != permission]
    staff_with(client, "view_run", *others)
    handle = run_for(button)
    before = handle.refresh().status
    answer = client.post(press_url(handle.id, button), form, follow=True)
    assert f"you need the permission django_durable.{permission}" in followed(answer)
    assert handle.refresh().status == before and not done(handle.model)


def test_the_page_says_which_live_workers_know_the_workflow(client, superuser):
    from django.utils import timezone

    from django_durable.models import Run, WorkerProcess

    handle = wf.add.start(1, 2)
    page = text(client.get(change_url(handle.id)))
    assert "Workers that know its workflow" in page
    assert "No live worker knows workflow <code>tests.add</code>" in page
    assert "start (or restart) a worker whose code defines it" in page
    assert "UNKNOWN_WORKFLOW_TIMEOUT" in page

    def worker(name: str, queues: list[str], workflows: list[str], seen=None) -> None:
        WorkerProcess.objects.create(
            id=name,
            hostname=name,
            pid=1,
            queues=queues,
            concurrency=1,
            workflows=workflows,
            last_seen_at=seen or timezone.now(),
        )

    worker("old-code:1", ["default"], ["tests.counted"])
    worker("new-code:2", ["emails"], ["tests.add", "tests.counted"])
    worker("gone:3", ["default"], ["tests.add"], seen=timezone.now() - timezone.timedelta(hours=1))
    page = text(client.get(change_url(handle.id)))
    assert "1 live worker: new-code:2 (queues emails). None of them serves queue" in page
    assert "old-code:1" not in page and "gone:3" not in page
    worker("new-code:4", ["default"], ["tests.add"])
    page = text(client.get(change_url(handle.id)))
    assert "2 live workers: new-code:2 (queues emails), new-code:4 (queues default)." in page
    # A finished run's page does not ask.
    Run.objects.filter(pk=handle.id).update(status=RunStatus.COMPLETED, result=3)
    assert "Workers that know its workflow" not in text(client.get(change_url(handle.id)))
