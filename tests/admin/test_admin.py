"""The admin: runs and their steps as read-only history, worker processes, query counts."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import django_durable as durable
from django_durable import display
from django_durable.engine.channels import progress
from django_durable.models import Event, Message, Run, RunValue, StreamItem, WorkerProcess
from django_durable.testing import run_all
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:django_durable_run_changelist")


def change_url(run_id: str) -> str:
    return reverse("admin:django_durable_run_change", args=[run_id])


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


@pytest.fixture
def staff(client):
    """A staff user who is not a superuser and has no permissions yet."""
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client.force_login(user)
    return user


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


@pytest.fixture
def runs():
    """A completed run, a failed one, and a pending one on another queue."""
    added = wf.add.using(idempotency_key="order-42").start(2, b=3)
    failed = wf.boom.start()
    run_all()
    pending = wf.counted.using(queue="slow").start(1)
    return {"added": added.id, "failed": failed.id, "pending": pending.id}


def listed(content: str, runs: dict[str, str]) -> set[str]:
    """Return the names of the runs that a changelist page shows."""
    return {name for name, run_id in runs.items() if run_id in content}


# --- changelist ------------------------------------------------------------------------


def test_the_changelist_shows_runs_newest_first_with_filters(superuser, client, runs):
    content = page(client.get(CHANGELIST))
    assert listed(content, runs) == {"added", "failed", "pending"}
    positions = [content.index(runs[name]) for name in ("pending", "failed", "added")]
    assert positions == sorted(positions)
    for text in ("tests.add", "tests.boom", "Completed", "Failed", "Pending", "slow"):
        assert text in content
    assert 'style="color: #dc3545">Failed<' in content
    # Filter choices come from the registered workflows and their queues.
    assert "?workflow_name=tests.sleeper" in content and "?queue=default" in content
    assert "?status__exact=failed" in content
    assert "Add workflow run" not in content
    assert 'name="_save"' not in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "failed"}, {"failed"}),
        ({"status__exact": "completed"}, {"added"}),
        ({"workflow_name": "tests.add"}, {"added"}),
        ({"workflow_name": "tests.gone"}, set()),
        ({"queue": "slow"}, {"pending"}),
        ({"queue": "default", "status__exact": "failed"}, {"failed"}),
        ({"q": "order-42"}, {"added"}),
        ({"q": "boo"}, {"failed"}),
        ({"q": "tests."}, {"added", "failed", "pending"}),
        ({"q": "nothing-like-this"}, set()),
    ],
)
def test_the_changelist_filters_and_searches(superuser, client, runs, query, expected):
    assert listed(page(client.get(CHANGELIST, query)), runs) == expected


def test_search_finds_a_run_by_its_id(superuser, client, runs):
    assert listed(page(client.get(CHANGELIST, {"q": runs["failed"]})), runs) == {"failed"}
    assert listed(page(client.get(CHANGELIST, {"q": f"  {runs['added'].upper()} "})), runs) == {
        "added"
    }


def test_a_selected_workflow_no_longer_registered_stays_selectable(superuser, client, runs):
    content = page(client.get(CHANGELIST, {"workflow_name": "tests.gone"}))
    assert "?workflow_name=tests.gone" in content


def test_the_date_hierarchy_drills_down(superuser, client, runs):
    today = timezone.localdate()
    query = {"created_at__year": today.year, "created_at__month": today.month}
    assert listed(page(client.get(CHANGELIST, query)), runs) == set(runs)
    assert listed(page(client.get(CHANGELIST, {"created_at__year": today.year - 1})), runs) == set()


def page_queries(queries, table: str) -> list[str]:
    """Return the captured queries that read the rows of a changelist page of ``table``."""
    return [q["sql"] for q in queries if q["sql"].startswith(f'SELECT "{table}"."id", ')]


def on_table(queries, table: str) -> list[str]:
    """Return the captured queries that read ``table``."""
    return [query["sql"] for query in queries if f'FROM "{table}"' in query["sql"]]


def test_the_changelist_query_count_does_not_grow_with_the_runs(
    superuser, client, django_assert_max_num_queries
):
    def make(count: int) -> None:
        # Every other run publishes progress (2 of 2: 100%), the others have none.
        for index in range(count):
            if index % 2:
                wf.add.start(index, 1)
            else:
                wf.publishes.start(2)
        run_all()

    make(3)
    client.get(CHANGELIST)  # warm up: session, content types
    with CaptureQueriesContext(connection) as few:
        assert page(client.get(CHANGELIST)).count('<progress max="100" value="100"') == 2
    make(27)
    with django_assert_max_num_queries(len(few)) as many:
        content = page(client.get(CHANGELIST))
    assert content.count("tests.add") + content.count("tests.publishes") >= 30
    # The progress column: one query for the page's runs, on both pages.
    assert content.count('<progress max="100" value="100"') == 16
    assert len(on_table(few.captured_queries, "durable_value")) == 1
    assert len(on_table(many.captured_queries, "durable_value")) == 1
    # No full COUNT(*) next to the filtered one (show_full_result_count = False).
    assert sum("COUNT(*)" in query["sql"].upper() for query in many.captured_queries) <= 1
    # The big JSON columns are not read for the list.
    (page_query,) = page_queries(many, "durable_run")
    assert '"durable_run"."input"' not in page_query and '"durable_run"."status"' in page_query


# --- change view ------------------------------------------------------------------------


def test_the_change_view_shows_the_run_its_json_and_its_steps(superuser, client, runs):
    content = page(client.get(change_url(runs["added"])))
    assert runs["added"] in content and "order-42" in content
    assert '"args": [\n    2\n  ],\n  "kwargs": {\n    "b": 3\n  }' in content  # pretty input
    assert "Result:" in content and ">5</pre>" in content
    assert "Error:" not in content and "Traceback" not in content
    # The steps table: position, kind, name, status, attempts, duration, when, outcome.
    steps = content[content.index('id="durable-steps"') :]
    cells = re.findall(r"<td>(.*?)</td>", steps[: steps.index("</table>")])
    assert cells[:5] == ["0", "step", "add", "completed", "1"]
    assert re.fullmatch(r"\d+\.\d\dms", cells[5])
    assert cells[7] == "<code>5</code>"
    assert 'name="_save"' not in content and "Close" in content
    assert "Lease" in content and "Timestamps" in content


def test_the_change_view_of_a_failed_run_shows_its_error_and_traceback(superuser, client, runs):
    content = page(client.get(change_url(runs["failed"])))
    assert '"type": "ValueError"' in content and '"message": "boom"' in content
    traceback = content[content.index("Traceback (most recent call last)") :]
    assert 'raise ValueError("boom")' in traceback[: traceback.index("</pre>")]
    # Shown once, in its <pre>, not inside the error's JSON.
    assert content.count("Traceback (most recent call last)") == 1


def test_the_change_view_decodes_stored_types(superuser, client):
    from decimal import Decimal

    handle = wf.types.start(timezone.now(), Decimal("1.5"))
    run_all()
    content = page(client.get(change_url(handle.id)))
    assert '"amount": "3.0"' in content and '"tuple": [\n    1,\n    2\n  ]' in content
    assert '"3.0"' in content  # the step's result preview


def test_runs_cannot_be_added_or_changed(superuser, client, runs):
    assert client.get(reverse("admin:django_durable_run_add")).status_code == 403
    response = client.post(change_url(runs["pending"]), {"status": "completed"})
    assert response.status_code == 403
    assert Run.objects.get(pk=runs["pending"]).status == "pending"


def test_only_superusers_delete_and_only_finished_runs(superuser, client, runs):
    delete = reverse("admin:django_durable_run_delete", args=[runs["failed"]])
    assert page(client.get(delete))
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Run.objects.filter(pk=runs["failed"]).exists()
    active = reverse("admin:django_durable_run_delete", args=[runs["pending"]])
    for refused in (client.get(active), client.post(active, {"post": "yes"})):
        assert refused.status_code == 302
        assert refused["Location"] == change_url(runs["pending"])
    said = page(client.get(change_url(runs["pending"])))
    assert "not deleted because it has not finished (it is pending)" in said
    assert "Cancel it first" in said
    assert Run.objects.filter(pk=runs["pending"]).exists()


def test_the_bulk_delete_action_refuses_runs_that_are_not_finished(superuser, client, runs):
    data = {"action": "delete_selected", "_selected_action": [runs["pending"]]}
    said = page(client.post(CHANGELIST, data, follow=True))
    assert "1 run is not deleted because it has not finished" in said
    assert runs["pending"] in said and "cancel it first" in said
    data["_selected_action"] = [runs["added"], runs["pending"], runs["failed"]]
    confirm = page(client.post(CHANGELIST, data))
    assert "Are you sure" in confirm and runs["failed"] in confirm
    assert "1 run is not deleted" in confirm and f'value="{runs["pending"]}"' not in confirm
    assert Run.objects.count() == 3
    data["post"] = "yes"
    assert client.post(CHANGELIST, data).status_code == 302
    assert set(map(str, Run.objects.values_list("pk", flat=True))) == {runs["pending"]}


def test_delete_comes_last_among_the_actions(superuser, client, runs):
    listed = page(client.get(CHANGELIST))
    options = re.findall(r'<option value="(\w+)"', listed)
    assert options[-1] == "delete_selected", options
    assert options.index("cancel_runs") < options.index("delete_selected")
    assert "Delete selected finished runs" in listed


def test_staff_without_permissions_is_refused(staff, client, runs):
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(runs["added"])).status_code == 403
    assert client.get(reverse("admin:django_durable_workerprocess_changelist")).status_code == 403


def test_staff_with_the_view_permission_sees_runs_and_steps_but_cannot_delete(staff, client, runs):
    grant(staff, "view_run", "delete_run", "change_run")
    assert listed(page(client.get(CHANGELIST)), runs) == {"added", "failed", "pending"}
    content = page(client.get(change_url(runs["added"])))
    assert "Steps" in content and "order-42" in content
    delete = reverse("admin:django_durable_run_delete", args=[runs["added"]])
    assert client.get(delete).status_code == 403


def test_anonymous_users_are_sent_to_the_login_page(client, runs):
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- workers ----------------------------------------------------------------------------


def test_the_worker_admin_lists_workers_and_whether_they_are_alive(superuser, client):
    now = timezone.now()
    common = {"concurrency": 4, "queues": ["default", "emails"]}
    WorkerProcess.objects.create(id="alive-1", hostname="web-a", pid=1, **common)
    WorkerProcess.objects.create(id="stopped-1", hostname="web-b", pid=2, stopped_at=now, **common)
    WorkerProcess.objects.create(
        id="lost-1", hostname="web-c", pid=3, last_seen_at=now - timedelta(hours=1), **common
    )
    url = reverse("admin:django_durable_workerprocess_changelist")
    content = page(client.get(url))
    for text in ("web-a", "web-b", "web-c", "default, emails"):
        assert text in content
    assert content.count("icon-yes.svg") == 1 and content.count("icon-no.svg") == 2
    assert "Add worker process" not in content
    alive = page(client.get(url, {"alive": "yes"}))
    assert "web-a" in alive and "web-b" not in alive and "web-c" not in alive
    dead = page(client.get(url, {"alive": "no"}))
    assert "web-a" not in dead and "web-b" in dead and "web-c" in dead
    detail = page(client.get(reverse("admin:django_durable_workerprocess_change", args=["lost-1"])))
    assert "web-c" in detail and 'name="_save"' not in detail
    assert client.get(reverse("admin:django_durable_workerprocess_add")).status_code == 403


# --- what runs publish and receive ----------------------------------------------------------


def section(content: str, title: str) -> str:
    """Return the fieldset of a change page titled ``title``."""
    start = content.index(f">{title}</h2>")
    return content[start : content.index("</fieldset>", start)]


def test_progress_is_read_from_set_progress_values_only():
    one_third = display.Progress.from_value(progress(1, 3, "one"))
    assert one_third is not None and one_third.percent == 33.3
    assert one_third.describe() == "1 / 3 (33.3%) · one"
    assert display.Progress.from_value(progress(5, None, "")).describe() == "5"
    assert display.Progress.from_value({"percent": 140}).describe() == "100%"
    for other in (None, 3, "x", [1], {}, {"done": "many"}, {"done": True}, {"message": "hi"}):
        assert display.Progress.from_value(other) is None


def test_the_changelist_shows_a_progress_without_total_as_a_count(superuser, client, runs):
    RunValue.objects.create(
        run_id=runs["pending"], key="progress", value=progress(5, None, "rows"), position=1
    )
    RunValue.objects.create(run_id=runs["added"], key="progress", value="not one", position=1)
    RunValue.objects.create(
        run_id=runs["failed"], key="progress", value=progress(1, 3, "old"), position=1
    )
    RunValue.objects.create(
        run_id=runs["failed"], key="progress", value=progress(2, 3, "new"), position=2
    )
    content = page(client.get(CHANGELIST))
    ids = re.findall(r'<th class="field-short_id"><a href="[^"]*"><span title="([^"]+)"', content)
    columns = re.findall(r'<td class="field-progress_column">(.*?)</td>', content)
    cells = dict(zip(ids, columns, strict=True))
    assert cells[runs["pending"]] == "5 · rows"
    assert cells[runs["added"]] == "-"
    assert 'title="2 / 3 (66.7%) · new"><progress max="100" value="66.7"' in cells[runs["failed"]]


def test_the_change_view_shows_progress_values_messages_and_streams(superuser, client):
    handle = wf.async_channels.start("doc-1")
    durable.emit_event("doc-1", "ready")
    message_id = durable.send(handle.id, {"sku": "A-1"}, topic="go")
    run_all()
    content = page(client.get(change_url(handle.id)))
    # set_progress(1, 2, "half"): a bar at 50%.
    assert (
        '<progress max="100" value="50" style="width: 20em">50%</progress> 1 / 2 (50%) · half'
        in (content)
    )
    values = section(content, "Values")
    assert "<td>progress</td>" in values
    assert '"percent": 50.0' in values and '"message": "half"' in values
    messages = section(content, "Messages")
    cells = re.findall(r"<td>(.*?)</td>", messages)
    assert cells[0] == str(message_id) and cells[1] == "go"
    assert cells[3].endswith(" at position 1")  # taken by the recv at position 1
    assert cells[4] == '{"sku": "A-1"}'
    streams = section(content, "Streams")
    assert re.findall(r"<td>(.*?)</td>", streams) == ["out", "1", "closed", "0"]
    assert "Wakes on:" not in content  # not waiting


def test_sections_a_run_does_not_have_are_left_out(superuser, client, runs):
    content = page(client.get(change_url(runs["added"])))
    for title in ("Values", "Messages", "Streams"):
        assert f">{title}</h2>" not in content
    assert "<progress" not in content


def test_the_change_view_shows_an_open_stream_and_pending_messages(superuser, client, worker):
    open_stream = wf.streams.start(3, close=False)
    waiting = wf.receives.start(2, "orders")
    drain_waiting = [worker.run_once() for _ in range(3)]
    assert any(drain_waiting)
    content = page(client.get(change_url(open_stream.id)))
    assert re.findall(r"<td>(.*?)</td>", section(content, "Streams")) == ["out", "3", "open", "2"]
    assert Run.objects.get(pk=waiting.id).status == "waiting"
    content = page(client.get(change_url(waiting.id)))
    assert "event 'orders'" not in content
    assert "waiting for a message on topic orders" in content
    durable.send(waiting.id, [1, 2], topic="other")
    cells = re.findall(
        r"<td>(.*?)</td>", section(page(client.get(change_url(waiting.id))), "Messages")
    )
    assert cells[1:] == ["other", cells[2], "pending", "[1, 2]"]


def test_the_change_view_says_which_event_a_run_waits_for(superuser, client, worker):
    handle = wf.waits_event.start("approved:doc-7")
    worker.run_once()
    content = page(client.get(change_url(handle.id)))
    assert "event 'approved:doc-7'" in content  # waiting_for
    assert "Wakes on:" in content and "waiting for event approved:doc-7" in content
    untopical = wf.receives.start(1)
    worker.run_once()
    content = page(client.get(change_url(untopical.id)))
    assert "waiting for a message<" in content


def test_big_payloads_are_cut_and_long_lists_are_bounded(superuser, client, runs):
    run_id = runs["pending"]
    RunValue.objects.create(run_id=run_id, key="big", value="x" * 10_000, position=1)
    for index in range(60):
        durable.send(run_id, {"index": index, "padding": "y" * 200})
    content = page(client.get(change_url(run_id)))
    values = section(content, "Values")
    assert "x" * 1990 in values and "x" * 2001 not in values and "x…" in values
    messages = section(content, "Messages")
    assert "The newest 50 of 60 messages." in messages
    assert f"?q={run_id}" in messages
    assert messages.count("<tr>") == 51  # the header and 50 messages
    # Cut in the database: the JSON text as stored (jsonb spaces it, SQLite does not).
    assert re.search(r'<td>\{"index": ?59, ?"padding": ?"y{40,}…</td>', messages)
    assert "y" * 100 not in messages
    assert '{"index": 9,' not in messages


def test_the_change_view_query_count_does_not_grow_with_what_a_run_published(
    superuser, client, runs
):
    def publish(run_id: str, count: int) -> None:
        RunValue.objects.bulk_create(
            RunValue(run_id=run_id, key=f"k{index}", value=index, position=index)
            for index in range(count)
        )
        StreamItem.objects.bulk_create(
            StreamItem(run_id=run_id, key=f"s{index % 150}", offset=index // 150, value=index)
            for index in range(count * 2)
        )
        Message.objects.bulk_create(
            Message(run_id=run_id, topic="", data=index) for index in range(count)
        )
        # Child runs, as a worker would insert them.
        Run.objects.bulk_create(
            Run(workflow_name="tests.add", parent_id=run_id, parent_position=index, depth=1)
            for index in range(count)
        )

    publish(runs["added"], 1)
    publish(runs["pending"], 150)
    client.get(change_url(runs["added"]))  # warm up
    with CaptureQueriesContext(connection) as few:
        few_page = page(client.get(change_url(runs["added"])))
    with CaptureQueriesContext(connection) as many:
        many_page = page(client.get(change_url(runs["pending"])))
    assert "The first 100 keys, by name." in many_page
    assert "The first 100 streams, by key." in many_page
    assert "The first 50 of 150 child runs." in many_page
    assert "The first 100" not in few_page and "child runs." not in few_page
    # The progress bar and the values table: one query each.
    assert len(on_table(few, "durable_value")) == len(on_table(many, "durable_value")) == 2
    assert len(on_table(few, "durable_stream")) == len(on_table(many, "durable_stream")) == 1
    # The newest 50 messages, and a count only when there are more.
    assert len(on_table(few, "durable_message")) == 1
    assert len(on_table(many, "durable_message")) == 2
    # The run, its first 50 children, its first 50 forks, and a count of children only when
    # there are more.
    assert len(on_table(few, "durable_run")) == 3
    assert len(on_table(many, "durable_run")) == 4
    # The summary, the timeline and one page of steps: a few queries, however many steps.
    assert len(on_table(few, "durable_step")) <= 5 and len(on_table(many, "durable_step")) <= 5
    assert len(many) <= len(few) + 2


# --- events and messages ----------------------------------------------------------------

EVENTS = reverse("admin:django_durable_event_changelist")
MESSAGES = reverse("admin:django_durable_message_changelist")


@pytest.fixture
def events():
    emitted = wf.emits.start("orders.shipped:7")
    run_all()
    return {
        "confirmed-1": durable.emit_event("payment.confirmed:1", {"amount": 10}, type="paid"),
        "confirmed-12": durable.emit_event("payment.confirmed:12", None, source="psp"),
        "refunded": durable.emit_event("payment.refunded:1", [1], type="refund"),
        "shipped": Event.objects.get(name="orders.shipped:7").pk,
        "run": emitted.id,
    }


def event_ids(content: str, model: str = "event") -> set[int]:
    """Return the ids of the events (or messages) a changelist page links to."""
    return {int(pk) for pk in re.findall(rf'href="/admin/django_durable/{model}/(\d+)/', content)}


def message_ids(content: str) -> set[int]:
    return event_ids(content, "message")


def test_the_event_admin_lists_events_newest_first_with_their_run(superuser, client, events):
    content = page(client.get(EVENTS))
    for text in ("payment.confirmed:1", "payment.refunded:1", "psp", "paid", "refund"):
        assert text in content
    assert content.index("payment.refunded:1") < content.index("payment.confirmed:12")
    assert change_url(events["run"]) in content  # the run that emitted orders.shipped:7
    assert event_ids(content) == {events[name] for name in events if name != "run"}
    assert "Add event" not in content


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"q": "payment.confirmed:1"}, {"confirmed-1"}),
        ({"q": "payment.confirmed:*"}, {"confirmed-1", "confirmed-12"}),
        ({"q": "payment.*"}, {"confirmed-1", "confirmed-12", "refunded"}),
        ({"q": "payment"}, set()),
        ({"q": "*"}, {"confirmed-1", "confirmed-12", "refunded", "shipped"}),
        ({"type": "paid"}, {"confirmed-1"}),
        ({"type": "refund", "q": "payment.*"}, {"refunded"}),
    ],
)
def test_the_event_admin_searches_names_and_filters_types(
    superuser, client, events, query, expected
):
    content = page(client.get(EVENTS, query))
    assert event_ids(content) == {events[name] for name in expected}


def test_the_event_admin_finds_an_event_by_id_and_offers_recent_types(superuser, client, events):
    assert event_ids(page(client.get(EVENTS, {"q": str(events["refunded"])}))) == {
        events["refunded"]
    }
    content = page(client.get(EVENTS))
    for type_ in ("paid", "refund", "demo"):
        assert f"?type={type_}" in content


def test_events_are_read_only_and_only_superusers_delete_them(superuser, client, events):
    url = reverse("admin:django_durable_event_change", args=[events["confirmed-1"]])
    content = page(client.get(url))
    assert '"amount": 10' in content and 'name="_save"' not in content
    assert client.post(url, {"name": "changed"}).status_code == 403
    assert client.get(reverse("admin:django_durable_event_add")).status_code == 403
    delete = reverse("admin:django_durable_event_delete", args=[events["confirmed-1"]])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Event.objects.filter(pk=events["confirmed-1"]).exists()


def test_staff_may_view_events_and_messages_but_not_delete_them(staff, client, events):
    assert client.get(EVENTS).status_code == 403
    grant(staff, "view_event", "delete_event", "view_message", "delete_message")
    assert event_ids(page(client.get(EVENTS))) == {events[n] for n in events if n != "run"}
    delete = reverse("admin:django_durable_event_delete", args=[events["refunded"]])
    assert client.get(delete).status_code == 403
    assert page(client.get(MESSAGES))


@pytest.fixture
def messages(worker):
    """Two messages to a run, one of them taken by its recv, and one to another run."""
    waiting = wf.receives.start(1, "orders")
    other = wf.add.start(1, 2)
    taken = durable.send(waiting.id, {"sku": "A"}, topic="orders")
    pending = durable.send(waiting.id, {"sku": "B"}, topic="orders")
    elsewhere = durable.send(other.id, "hello")
    worker.run_once()
    return {
        "taken": taken,
        "pending": pending,
        "elsewhere": elsewhere,
        "run": waiting.id,
        "other": other.id,
    }


def test_the_message_admin_lists_messages_and_whether_they_were_taken(superuser, client, messages):
    content = page(client.get(MESSAGES))
    ids = {messages[name] for name in ("taken", "pending", "elsewhere")}
    assert message_ids(content) == ids
    assert change_url(messages["run"]) in content and change_url(messages["other"]) in content
    assert "at position 0" in content and "pending" in content
    assert "Add message" not in content and "delete_selected" not in content
    consumed = page(client.get(MESSAGES, {"consumed": "yes"}))
    assert message_ids(consumed) == {messages["taken"]}
    pending = page(client.get(MESSAGES, {"consumed": "no"}))
    assert message_ids(pending) == {messages["pending"], messages["elsewhere"]}
    by_run = page(client.get(MESSAGES, {"q": messages["run"]}))
    assert message_ids(by_run) == {messages["taken"], messages["pending"]}
    assert message_ids(page(client.get(MESSAGES, {"q": str(messages["elsewhere"])}))) == {
        messages["elsewhere"]
    }
    assert message_ids(page(client.get(MESSAGES, {"q": "orders"}))) == set()


def test_messages_are_read_only_even_for_superusers(superuser, client, messages):
    url = reverse("admin:django_durable_message_change", args=[messages["pending"]])
    content = page(client.get(url))
    assert '"sku": "B"' in content and "orders" in content and 'name="_save"' not in content
    assert client.post(url, {"topic": "x"}).status_code == 403
    assert client.get(reverse("admin:django_durable_message_add")).status_code == 403
    delete = reverse("admin:django_durable_message_delete", args=[messages["pending"]])
    assert client.get(delete).status_code == 403
    assert Message.objects.filter(pk=messages["pending"]).exists()


@pytest.mark.parametrize("changelist", [EVENTS, MESSAGES])
def test_event_and_message_changelists_query_count_does_not_grow(
    superuser, client, changelist, django_assert_max_num_queries
):
    target = wf.add.start(1, 2)

    def make(count: int) -> None:
        for index in range(count):
            durable.emit_event(f"tick:{index}", {"index": index}, type=f"t{index % 3}")
            durable.send(target.id, {"index": index}, topic="ticks")

    model = changelist.split("/")[-2]
    make(3)
    client.get(changelist)  # warm up
    with CaptureQueriesContext(connection) as few:
        assert len(event_ids(page(client.get(changelist)), model)) == 3
    make(27)
    with django_assert_max_num_queries(len(few)) as many:
        assert len(event_ids(page(client.get(changelist)), model)) == 30
    # No full COUNT(*), no payloads read for the list.
    assert sum("COUNT(*)" in query["sql"].upper() for query in many.captured_queries) == 1
    (page_query,) = page_queries(many, f"durable_{model}")
    assert '"data"' not in page_query


# --- operating runs: cancel and retry actions, parents and children ---------------------------


def act(client, action: str, *run_ids: str) -> str:
    """Run an admin action on the changelist and return the page it redirects to."""
    response = client.post(
        CHANGELIST, {"action": action, "_selected_action": list(run_ids)}, follow=True
    )
    return page(response)


@pytest.fixture
def operable(worker):
    """A sleeping run, one that never started, a completed one and a failed one."""
    sleeping = wf.cleanup.start()
    worker.run_once()
    assert sleeping.refresh().status == "waiting"
    done = wf.add.start(1, 2)
    failed = wf.retry_me.start()
    worker.run_once()
    worker.run_once()
    pending = wf.add.start(3, 4)
    assert (done.refresh().status, failed.refresh().status) == ("completed", "failed")
    return {"sleeping": sleeping, "pending": pending, "done": done, "failed": failed}


def test_the_cancel_action_cancels_through_the_client_and_skips_finished_runs(
    superuser, client, operable, worker
):
    from tests.testapp.models import Execution

    ids = {name: handle.id for name, handle in operable.items()}
    content = act(client, "cancel_runs", ids["sleeping"], ids["pending"], ids["done"])
    assert "Cancelled 2 runs; runs in progress stop at their next durable operation." in content
    assert f"Skipped 1 run already finished: {ids['done']}." in content
    assert operable["pending"].refresh().status == "cancelled"
    sleeping = operable["sleeping"].refresh()
    assert sleeping.status == "pending" and sleeping.model.cancel_reason == "cancelled in the admin"
    while worker.run_once():
        pass
    assert sleeping.refresh().status == "cancelled"
    assert Execution.objects.filter(run_id=ids["sleeping"], label="cleanup").count() == 1
    assert operable["done"].refresh().status == "completed"
    # The admin's history says who did it.
    history = page(client.get(reverse("admin:django_durable_run_history", args=[ids["pending"]])))
    assert "Cancelled." in history and "root" in history


def test_the_retry_action_retries_failed_runs_and_skips_the_others(
    superuser, client, operable, worker
):
    ids = {name: handle.id for name, handle in operable.items()}
    content = act(client, "retry_runs", ids["failed"], ids["done"], ids["sleeping"])
    assert "Retried 1 run: it starts again from its checkpoints." in content
    assert "Skipped 2 runs that are not failed or cancelled: " in content
    assert ids["done"] in content and ids["sleeping"] in content
    retried = operable["failed"].refresh()
    assert (retried.status, retried.model.attempt) == ("pending", 2)
    worker.run_once()
    assert retried.result(timeout=1) == 7
    assert operable["done"].refresh().model.attempt == 1


def test_a_cancelled_run_can_be_retried_from_the_admin(superuser, client, operable):
    run_id = operable["pending"].id
    act(client, "cancel_runs", run_id)
    assert "Retried 1 run" in act(client, "retry_runs", run_id)
    assert operable["pending"].refresh().status == "pending"


def test_skipped_runs_are_named_up_to_ten(superuser, client):
    handles = [wf.add.start(index, 1) for index in range(12)]
    run_all()
    content = act(client, "cancel_runs", *(handle.id for handle in handles))
    (message,) = re.findall(r'<li class="warning">(.*?)</li>', content)
    assert message.startswith("Skipped 12 runs already finished: ")
    assert message.endswith(" and 2 more.")
    assert sum(handle.id in message for handle in handles) == 10


def test_only_operators_see_and_use_the_actions(staff, client, operable):
    grant(staff, "view_run")
    content = page(client.get(CHANGELIST))
    assert "cancel_runs" not in content and "retry_runs" not in content
    act(client, "cancel_runs", operable["pending"].id)
    act(client, "retry_runs", operable["failed"].id)
    assert operable["pending"].refresh().status == "pending"
    assert operable["failed"].refresh().status == "failed"
    grant(staff, "operate_run")
    staff = User.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    content = page(client.get(CHANGELIST))
    assert "Cancel selected runs" in content and "Retry selected runs" in content
    assert "Cancelled 1 run;" in act(client, "cancel_runs", operable["pending"].id)
    assert operable["pending"].refresh().status == "cancelled"


def test_superusers_see_the_actions(superuser, client, runs):
    content = page(client.get(CHANGELIST))
    assert "Cancel selected runs" in content and "Retry selected runs" in content


def test_the_change_view_links_parent_and_children(superuser, client, worker):
    parent = wf.parent_fanout.start(2)
    worker.run_once()
    children = parent.children()
    content = page(client.get(change_url(parent.id)))
    family = section(content, "Parent and children")
    assert [change_url(child.id) in family for child in children] == [True, True]
    assert family.count("tests.child_double") == 2 and "Pending" in family
    assert "Parent run:" not in family  # a top-level run
    child = page(client.get(change_url(children[0].id)))
    family = section(child, "Parent and children")
    assert change_url(parent.id) in family and "started at its position 0" in family
    assert "Child runs:" not in family
    assert ">Parent and children</h2>" not in page(client.get(change_url(wf.add.start(1, 1).id)))


def test_the_change_view_shows_the_cancellation_request(superuser, client, worker):
    handle = wf.cleanup.start()
    worker.run_once()
    assert "Cancellation:" not in page(client.get(change_url(handle.id)))
    durable.cancel(handle.id, "customer left")
    content = page(client.get(change_url(handle.id)))
    assert "Cancellation:" in content and ": customer left" in content


def test_the_all_children_link_filters_the_changelist_by_parent(superuser, client, runs):
    Run.objects.bulk_create(
        Run(workflow_name="tests.add", parent_id=runs["added"], parent_position=index, depth=1)
        for index in range(51)
    )
    content = page(client.get(change_url(runs["added"])))
    link = f"{CHANGELIST}?parent__id__exact={runs['added']}"
    assert link in content
    listed = page(client.get(link))
    assert "51 workflow runs" in listed  # the children only
    assert runs["failed"] not in listed and runs["pending"] not in listed
