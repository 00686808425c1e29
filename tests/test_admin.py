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

from django_durable.models import Run, WorkerProcess
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:django_durable_run_changelist")


def change_url(run_id: str) -> str:
    return reverse("admin:django_durable_run_change", args=[run_id])


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


@pytest.fixture
def superuser(client):
    user = User.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


@pytest.fixture
def staff(client):
    """A staff user who is not a superuser and has no permissions yet."""
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client.force_login(user)
    return user


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


@pytest.fixture
def runs(run_all):
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


def test_the_changelist_query_count_does_not_grow_with_the_runs(
    superuser, client, run_all, django_assert_max_num_queries
):
    def make(count: int) -> None:
        for index in range(count):
            wf.add.start(index, 1)
        run_all()

    make(3)
    client.get(CHANGELIST)  # warm up: session, content types
    with CaptureQueriesContext(connection) as few:
        assert client.get(CHANGELIST).status_code == 200
    make(27)
    with django_assert_max_num_queries(len(few)) as many:
        content = page(client.get(CHANGELIST))
    assert content.count("tests.add") >= 30
    # No full COUNT(*) next to the filtered one (show_full_result_count = False).
    assert sum("COUNT(*)" in query["sql"].upper() for query in many.captured_queries) <= 1
    # The big JSON columns are not read for the list.
    page_query = next(q["sql"] for q in many.captured_queries if "LIMIT" in q["sql"])
    assert '"durable_run"."input"' not in page_query


# --- change view ------------------------------------------------------------------------


def test_the_change_view_shows_the_run_its_json_and_its_steps(superuser, client, runs):
    content = page(client.get(change_url(runs["added"])))
    assert runs["added"] in content and "order-42" in content
    assert '"args": [\n    2\n  ],\n  "kwargs": {\n    "b": 3\n  }' in content  # pretty input
    assert "Result:" in content and ">5</pre>" in content
    assert "Error:" not in content and "Traceback" not in content
    # The steps inline: position, kind, name, status, attempts, duration, result preview.
    cells = re.findall(r'<td class="field-(\w+)">\s*<p>(.*?)</p>', content)
    assert cells[:6] == [
        ("position", "0"),
        ("kind", "step"),
        ("name", "add"),
        ("status", "Completed"),
        ("attempts", "1"),
        ("duration", cells[5][1]),
    ]
    assert re.fullmatch(r"\d+\.\d\dms", cells[5][1])
    assert cells[7:] == [("result_preview", "5"), ("error_summary", "")]
    assert 'name="_save"' not in content and "Close" in content
    assert "Lease" in content and "Timestamps" in content


def test_the_change_view_of_a_failed_run_shows_its_error_and_traceback(superuser, client, runs):
    content = page(client.get(change_url(runs["failed"])))
    assert '"type": "ValueError"' in content and '"message": "boom"' in content
    traceback = content[content.index("Traceback (most recent call last)") :]
    assert 'raise ValueError("boom")' in traceback[: traceback.index("</pre>")]
    # Shown once, in its <pre>, not inside the error's JSON.
    assert content.count("Traceback (most recent call last)") == 1


def test_the_change_view_decodes_stored_types(superuser, client, run_all):
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
    assert client.get(active).status_code == 403
    assert Run.objects.filter(pk=runs["pending"]).exists()


def test_the_bulk_delete_action_refuses_runs_that_are_not_finished(superuser, client, runs):
    selected = [runs["added"], runs["pending"]]
    data = {"action": "delete_selected", "_selected_action": selected}
    assert "doesn't have permission to delete" in page(client.post(CHANGELIST, data))
    data["post"] = "yes"
    assert client.post(CHANGELIST, data).status_code == 403
    assert Run.objects.filter(pk__in=selected).count() == 2
    data["_selected_action"] = [runs["added"], runs["failed"]]
    assert client.post(CHANGELIST, data).status_code == 302
    assert set(map(str, Run.objects.values_list("pk", flat=True))) == {runs["pending"]}


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
