"""The admin's dashboard: its figures on a hand-made set of runs, who may see it, its
escaping, and its queries (one per figure, however many runs and workflows)."""

from __future__ import annotations

import contextlib
import html
import re
import threading
from collections import Counter
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.cache import cache, caches
from django.urls import reverse
from django.utils import timezone

import django_durable as durable
from django_durable.core import hour_counts
from django_durable.display import dashboard as figures
from django_durable.models import Run, WorkerProcess

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:django_durable_dashboard")
APP_INDEX = reverse("admin:app_list", args=["django_durable"])
# Per page: the session, the user, then one query per figure (activity, waiting, queues,
# workers, failures).
QUERIES = 7


def ago(now: datetime, **delta: float) -> datetime:
    return now - timedelta(**delta)


def make(workflow: str, status: str, created: datetime, **fields) -> Run:
    """Insert a run as it would be in ``status``, with explicit timestamps."""
    fields.setdefault("updated_at", created)
    fields.setdefault("available_at", created)
    if status != "pending":
        fields.setdefault("started_at", created + timedelta(seconds=1))
    if status in ("completed", "failed", "cancelled"):
        fields.setdefault("finished_at", created + timedelta(seconds=2))
    return Run.objects.create(workflow_name=workflow, status=status, created_at=created, **fields)


def worker(name: str, seen: datetime, *, stopped: datetime | None = None, **fields):
    fields = {"queues": ["default", "mail"], "concurrency": 4, **fields}
    return WorkerProcess.objects.create(
        id=f"{name}:1:abc", hostname=name, pid=1, last_seen_at=seen, stopped_at=stopped, **fields
    )


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def runs(now):
    """Runs of two workflows over three days, on two queues, and three workers."""
    made = {
        "done_now": make("orders.checkout", "completed", ago(now, minutes=10)),
        "failed_now": make(
            "orders.checkout",
            "failed",
            ago(now, minutes=30),
            finished_at=ago(now, minutes=20),
            attempt=3,
            error={
                "type": "ValueError",
                "message": "card declined\nfor order 42",
                "traceback": "T",
            },
        ),
        "done_today": make(
            "orders.checkout", "completed", ago(now, hours=3), finished_at=ago(now, hours=2)
        ),
        "done_long_ago": make("orders.checkout", "completed", ago(now, days=2)),
        # Created more than a day ago, failed within the hour: a failure of the hour.
        "failed_late": make(
            "mail.send", "failed", ago(now, days=3), finished_at=ago(now, minutes=5), error=None
        ),
        "cancelled": make("mail.send", "cancelled", ago(now, hours=3)),
        "waiting_new": make(
            "mail.send", "waiting", ago(now, minutes=20), updated_at=ago(now, minutes=15)
        ),
        "waiting_old": make(
            "mail.send", "waiting", ago(now, hours=5), updated_at=ago(now, hours=4)
        ),
        "ready": make("mail.send", "pending", ago(now, minutes=50), queue="mail"),
        "ready_too": make(
            "mail.send",
            "pending",
            ago(now, minutes=50),
            queue="mail",
            available_at=ago(now, minutes=2),
        ),
        "later": make(
            "mail.send",
            "pending",
            ago(now, minutes=1),
            queue="mail",
            available_at=now + timedelta(hours=1),
        ),
        "running": make(
            "orders.checkout", "running", ago(now, minutes=1), claimed_by="alive:1:abc"
        ),
    }
    worker("alive", now)
    worker("stopped", ago(now, minutes=1), stopped=ago(now, minutes=1))
    worker("silent", ago(now, hours=1))
    return made


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def text(content: str) -> str:
    """Return the page's words: tags out, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())


@pytest.fixture
def staff(client):
    """A staff user with no permissions yet, logged in."""
    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True)
    client.force_login(user)
    return user


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


# --- the figures ---------------------------------------------------------------------------


def test_activity_counts_runs_started_completed_and_failed_per_window(runs, now):
    board = figures.dashboard(now)
    by_workflow = {item.workflow: item for item in board.activity}
    assert set(by_workflow) == {"orders.checkout", "mail.send"}
    checkout = by_workflow["orders.checkout"]
    # Started: created in the window (the running one too); two days ago is out.
    assert checkout.hour == figures.Counts(started=3, completed=1, failed=1)
    assert checkout.day == figures.Counts(started=4, completed=2, failed=1)
    mail = by_workflow["mail.send"]
    # The cancelled run counts as started, neither completed nor failed.
    assert mail.hour == figures.Counts(started=4, completed=0, failed=1)
    assert mail.day == figures.Counts(started=6, completed=0, failed=1)
    assert board.totals("hour") == figures.Counts(started=7, completed=1, failed=2)
    # The busiest workflow of the day first; these two are as busy (7 runs each): by name.
    assert [item.workflow for item in board.activity] == ["mail.send", "orders.checkout"]


def test_waiting_runs_per_workflow_with_the_oldest_wait(runs, now):
    [mail] = figures.dashboard(now).waiting
    assert (mail.workflow, mail.runs, mail.since) == ("mail.send", 2, ago(now, hours=4))


def test_ready_runs_per_queue_and_the_lag(runs, now):
    queues = {row.queue: row for row in figures.dashboard(now).queues}
    # The run available in an hour is not ready; the oldest ready one is 50 minutes old.
    assert (queues["mail"].ready, queues["mail"].oldest) == (2, ago(now, minutes=50))
    assert queues["mail"].lag(now) == pytest.approx(3000)
    # Queues the settings and the registered workflows name are listed, empty.
    assert queues["default"] == figures.QueueLag(queue="default", ready=0, oldest=None)
    assert {"single", "rated"} <= set(queues)
    assert next(iter(queues)) == "mail"  # the queue that lags most comes first


def test_live_workers_and_their_runs_in_flight(runs, now):
    [alive] = figures.dashboard(now).workers
    assert (alive.id, alive.in_flight, alive.concurrency) == ("alive:1:abc", 1, 4)
    assert alive.queues == ["default", "mail"]


def test_the_last_failures_newest_first_with_the_first_line_of_the_error(runs, now):
    failures = figures.dashboard(now).failures
    assert [f.run_id for f in failures] == [runs["failed_late"].pk, runs["failed_now"].pk]
    assert failures[1].error == "ValueError: card declined"
    assert failures[1].attempt == 3
    assert failures[0].error == ""


def test_only_the_newest_20_failures(now):
    for minutes in range(25):
        make("orders.checkout", "failed", ago(now, hours=2), finished_at=ago(now, minutes=minutes))
    failures = figures.dashboard(now).failures
    assert len(failures) == 20
    assert [f.finished_at for f in failures] == [ago(now, minutes=m) for m in range(20)]


@pytest.mark.parametrize(
    ("error_type", "message", "line"),
    [
        ("ValueError", "card declined\nmore", "ValueError: card declined"),
        ("ValueError", "", "ValueError"),
        ("django_durable.exceptions.FatalError", "no", "FatalError: no"),
        (None, "  just words\n", "just words"),
        (None, None, ""),
    ],
)
def test_first_line(error_type, message, line):
    assert figures.first_line(error_type, message) == line


def _counted(now: datetime, window: timedelta) -> dict[tuple[str, str], int]:
    """Count the runs started, completed and failed since ``now - window``, straight."""
    since = now - window
    counts: Counter[tuple[str, str]] = Counter()
    for run in Run.objects.all():
        if since <= run.created_at:
            counts[run.workflow_name, "started"] += 1
        if run.status in ("completed", "failed") and run.finished_at and since <= run.finished_at:
            counts[run.workflow_name, run.status] += 1
    return dict(counts)


def _shown(board: figures.Dashboard, window: str) -> dict[tuple[str, str], int]:
    shown = {}
    for item in board.activity:
        counts = getattr(item, window)
        for what in ("started", "completed", "failed"):
            if getattr(counts, what):
                shown[item.workflow, what] = getattr(counts, what)
    return shown


@pytest.mark.parametrize("minute", [0, 1, 37])
def test_the_day_counts_every_run_once_read_fresh_or_from_kept_hours(minute):
    """The whole past hours come from the cache on the second look: both looks count what
    a straight count counts, at the edges of the hours too."""
    now = timezone.now().replace(minute=minute, second=0, microsecond=0)
    for n in range(0, 26 * 60, 17):  # a run every 17 minutes over 26 hours, ends 3 min on
        status = ("completed", "failed", "running")[n % 3]
        make(f"w{n % 2}", status, ago(now, minutes=n), finished_at=ago(now, minutes=n - 3))
    make("w0", "completed", ago(now, hours=23), finished_at=ago(now, hours=23))  # on the edge
    make("w1", "failed", ago(now, days=1), finished_at=ago(now, days=1))  # the day's first instant
    for _ in range(2):
        board = figures.dashboard(now)
        assert _shown(board, "day") == _counted(now, figures.DAY)
        assert _shown(board, "hour") == _counted(now, figures.HOUR)


def test_whole_past_hours_are_read_once_and_kept_until_old_runs_change(
    runs, now, django_capture_on_commit_callbacks
):
    board = figures.dashboard(now)
    assert _shown(board, "day")["orders.checkout", "started"] == 4
    # Written behind the dashboard's back (not through durable): the kept hour still counts
    # what it counted, for hour_counts.SECONDS at most.
    make("orders.checkout", "completed", ago(now, hours=5))
    assert _shown(figures.dashboard(now), "day")["orders.checkout", "started"] == 4
    with django_capture_on_commit_callbacks(execute=True):
        hour_counts.changed("default")  # what durable's own writes to old runs call
    assert _shown(figures.dashboard(now), "day")["orders.checkout", "started"] == 5


@pytest.mark.parametrize("before", [None, 7])
def test_two_changes_committed_together_both_move_the_generation_on(monkeypatch, before):
    """Two processes that note a change at the same moment each move the generation on. A
    bump that reads the number and then writes it plus one lets both write the same number
    (held here at the instant between the two, where a busy server can stop either)."""
    key = hour_counts._generation_key("default")
    cache.delete(key)
    if before is not None:
        cache.set(key, before, None)
    backend = type(caches["default"])  # each thread has its own instance of it
    read = backend.get
    both_have_read = threading.Barrier(2)

    def read_then_wait(self, *args, **kwargs):
        value = read(self, *args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_have_read.wait(timeout=2)
        return value

    monkeypatch.setattr(backend, "get", read_then_wait)
    bumps = [
        threading.Thread(target=hour_counts._next_generation, args=("default",)) for _ in range(2)
    ]
    for bump in bumps:
        bump.start()
    for bump in bumps:
        bump.join()
    monkeypatch.undo()
    assert hour_counts.generation("default") == (before or 0) + 2


@pytest.mark.django_db(transaction=True)
def test_a_failed_run_retried_or_pruned_leaves_the_day_at_once():
    now = timezone.now()
    failed = make("orders.checkout", "failed", ago(now, hours=6), finished_at=ago(now, hours=5))
    old = make("mail.send", "completed", ago(now, hours=9), finished_at=ago(now, hours=8))
    assert _shown(figures.dashboard(), "day") == {
        ("orders.checkout", "started"): 1,
        ("orders.checkout", "failed"): 1,
        ("mail.send", "started"): 1,
        ("mail.send", "completed"): 1,
    }
    durable.retry(failed.pk)
    assert _shown(figures.dashboard(), "day") == {
        ("orders.checkout", "started"): 1,
        ("mail.send", "started"): 1,
        ("mail.send", "completed"): 1,
    }
    assert durable.prune(older_than=timedelta(hours=7)).runs == 1
    assert not Run.objects.filter(pk=old.pk).exists()
    assert _shown(figures.dashboard(), "day") == {("orders.checkout", "started"): 1}


@pytest.mark.django_db(transaction=True)
def test_runs_deleted_in_the_admin_leave_the_day_at_once(superuser, client):
    now = timezone.now()
    one, two, kept = (
        make("orders.checkout", "completed", ago(now, hours=h), finished_at=ago(now, hours=h))
        for h in (5, 6, 7)
    )
    assert _shown(figures.dashboard(), "day")["orders.checkout", "completed"] == 3
    changelist = reverse("admin:django_durable_run_changelist")
    data = {"action": "delete_selected", "_selected_action": [str(one.pk)], "post": "yes"}
    assert client.post(changelist, data).status_code == 302
    assert _shown(figures.dashboard(), "day")["orders.checkout", "completed"] == 2
    delete = reverse("admin:django_durable_run_delete", args=[two.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert _shown(figures.dashboard(), "day")["orders.checkout", "completed"] == 1
    assert list(Run.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_cache_that_fails_costs_the_shortcut_only(runs, now, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ConnectionError("the cache server is down")

    for name in ("get", "get_many", "set_many", "set", "incr", "add"):
        monkeypatch.setattr(cache, name, broken)
    board = figures.dashboard(now)
    assert _shown(board, "day") == _counted(now, figures.DAY)
    assert "the cache failed" in caplog.text


# --- the page ------------------------------------------------------------------------------


def test_the_page_shows_every_figure(superuser, client, runs):
    content = page(client.get(DASHBOARD))
    words = text(content)
    assert "Workflow runs dashboard" in words
    for heading in ("Last hour", "Last 24 hours", "Ready runs per queue", "Live workers"):
        assert heading in words
    # The tiles: started and failed in the last hour, waiting, ready, live workers.
    assert "Started 7 in the last hour; 10 in 24 hours" in words
    assert "Failed 2 in the last hour; 2 in 24 hours" in words
    assert "Waiting 2 the oldest since" in words
    assert re.search(r"Ready 2 the longest lag 50m 0\ds", words)  # and the seconds the test took
    assert "Live workers 1 running 1 run in 4 slots" in words
    # The activity table: per workflow, hour then 24 hours.
    assert "orders.checkout 3 1 1 4 2 1" in words
    assert "mail.send 4 0 1 6 0 1" in words
    # The charts: one per figure, each an image with a text alternative.
    assert content.count('role="img"') == 5
    assert "Last hour: 7 started, 1 completed, 2 failed, in 2 workflows." in words
    assert "2 runs wait, in 1 workflow." in words
    assert "alive:1: running 1 of 4" in words
    assert "stopped:1" not in words and "silent:1" not in words


def test_the_failures_link_to_their_runs(superuser, client, runs):
    content = page(client.get(DASHBOARD))
    for name in ("failed_now", "failed_late"):
        url = reverse("admin:django_durable_run_change", args=[runs[name].pk])
        assert f'href="{url}"' in content
    words = text(content)
    assert "ValueError: card declined" in words
    assert "for order 42" not in words  # the first line only


def test_the_charts_link_to_the_runs_they_count(superuser, client, runs):
    content = html.unescape(page(client.get(DASHBOARD)))
    changelist = reverse("admin:django_durable_run_changelist")
    assert f'href="{changelist}?workflow_name=orders.checkout"' in content
    # In the chart, and in its table (a chart is an image: its links are not read out).
    assert content.count(f'href="{changelist}?status__exact=waiting&workflow_name=mail.send"') == 2
    assert content.count(f'href="{changelist}?status__exact=pending&queue=mail"') == 2


def test_what_needs_attention_is_marked(superuser, client, runs):
    content = page(client.get(DASHBOARD))
    # Failures in the last hour, and a queue's lag over a minute; the workers are fine.
    marked = re.findall(
        r'durable-tile durable-alert"><span class="durable-tile-label">(\w+)', content
    )
    assert marked == ["Failed", "Ready"]


def test_an_empty_dashboard_says_so(superuser, client):
    content = page(client.get(DASHBOARD))
    assert re.findall(r'durable-alert"><span class="durable-tile-label">([\w ]+)', content) == [
        "Live workers"
    ]
    words = text(content)
    assert "No run started or finished in the last 24 hours." in words
    assert "No run is waiting." in words
    assert "Waiting 0 none waits" in words
    assert "No worker is alive" in words
    assert "No run has failed." in words
    assert "Ready 0 no lag" in words


def test_names_from_user_code_are_escaped(superuser, client, now):
    evil = '<script>alert("x")</script>'
    make(evil, "failed", ago(now, minutes=5), queue="<b>q</b>", error={"type": "<i>E</i>"})
    make(evil, "waiting", ago(now, minutes=5))
    make(evil, "pending", ago(now, minutes=5), queue="<b>q</b>")
    worker("<img src=x>", now, queues=["<u>q</u>"])
    content = page(client.get(DASHBOARD))
    for raw in (evil, "<b>q</b>", "<i>E</i>", "<img src=x>", "<u>q</u>"):
        assert raw not in content
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in content
    assert "&lt;b&gt;q&lt;/b&gt;" in content
    words = text(content)
    assert evil in words and "<i>E</i>" in words and "<u>q</u>" in words


# --- who may see it ------------------------------------------------------------------------


def test_staff_with_view_run_sees_the_dashboard(staff, client, runs):
    grant(staff, "view_run")
    assert "Workflow runs dashboard" in text(page(client.get(DASHBOARD)))


def test_staff_without_view_run_is_refused(staff, client, runs):
    grant(staff, "view_workerprocess")
    assert client.get(DASHBOARD).status_code == 403


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={DASHBOARD}"


def test_the_app_index_links_to_the_dashboard(staff, client):
    grant(staff, "view_run")
    content = page(client.get(APP_INDEX))
    assert f'<a href="{DASHBOARD}">Open the dashboard</a>' in content
    # The models are listed below it, as on any app's index.
    assert content.index(DASHBOARD) < content.index("Workflow runs")


def test_the_app_index_has_no_link_for_those_who_may_not_see_it(staff, client):
    grant(staff, "view_workerprocess")
    assert DASHBOARD not in page(client.get(APP_INDEX))


# --- queries -------------------------------------------------------------------------------


def test_one_query_per_figure_however_many_runs_and_workflows(
    superuser, client, runs, now, django_assert_num_queries
):
    client.get(DASHBOARD)  # warm up: content types
    with django_assert_num_queries(QUERIES):
        page(client.get(DASHBOARD))
    for index in range(30):
        workflow, queue = f"more.workflow_{index}", f"queue_{index % 7}"
        for status in ("completed", "failed", "waiting", "pending", "running"):
            make(workflow, status, ago(now, minutes=index + 1), queue=queue, claimed_by=None)
        worker(f"host{index}", now)
    with django_assert_num_queries(QUERIES):
        words = text(page(client.get(DASHBOARD)))
    assert "more.workflow_29" in words and "queue_6" in words and "host29:1" in words


def test_the_charts_draw_at_most_20_rows(superuser, client, now):
    for index in range(25):
        make(f"many.workflow_{index:02d}", "waiting", ago(now, minutes=5))
    content = page(client.get(DASHBOARD))
    chart = content[content.index('id="durable-waiting-title"') :]
    chart = chart[: chart.index("</svg>")]
    assert chart.count('class="durable-row"') == 20
    # The table under it has every row.
    assert "many.workflow_24" in text(content)
