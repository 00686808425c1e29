"""The runs list as a support desk: where each run is, search by what a customer quotes,
counts that do not read a million rows, and queries that do not grow with the page."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import django_durable as durable
from django_durable.admin.base import EstimatedPaginator
from django_durable.models import Run, RunStatus
from django_durable.testing import run_all, run_ready
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:django_durable_run_changelist")


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.content.decode())


def rows(content: str) -> list[str]:
    """The changelist's result rows, as text."""
    body = content.split('<table id="result_list">', 1)[1].split("</table>", 1)[0]
    return body.split("<tr")[2:]


def row_of(content: str, run_id: str) -> str:
    (row,) = [row for row in rows(content) if run_id in row]
    return row


def test_where_it_is_says_what_each_run_waits_for_or_why_it_failed(superuser, client):
    waiting = wf.waits_event.start("payment.confirmed:1042", timeout=3600)
    failed = wf.fatal.start()
    done = wf.counted.start(3)
    sleeping = wf.sleeper.start(3600)
    run_ready()
    later = wf.add.using(delay=600).start(1, 2)
    content = page(client.get(CHANGELIST))
    assert "where it is" in content.lower()
    row = row_of(content, waiting.id[-12:])
    assert "Waiting for event <code>payment.confirmed:1042</code> since " in row
    assert "times out" in row and ("(in 59 min)" in row or "(in 1 h" in row)
    assert "Failed at step <code>charge</code> after 1 attempt: FatalError: card declined" in (
        row_of(content, failed.id[-12:])
    )
    assert "Completed in " in row_of(content, done.id[-12:])
    assert ", 3 steps" in row_of(content, done.id[-12:])
    assert "Sleeping until " in row_of(content, sleeping.id[-12:])
    assert "Starts " in row_of(content, later.id[-12:])
    headers = content.split("<thead>", 1)[1].split("</thead>", 1)[0]
    order = ["workflow", "status", "where it is", "progress", "attempt", "duration", "created"]
    found = [headers.lower().index(f">{name}") for name in order]
    assert found == sorted(found)


def test_a_long_error_is_cut_in_the_list_and_whole_on_hover(superuser, client):
    failed = wf.boom.start()
    run_all()
    message = "card declined: " + "x" * 300 + "\nsecond line"
    Run.objects.filter(pk=failed.id).update(error={"type": "ValueError", "message": message})
    row = row_of(page(client.get(CHANGELIST)), failed.id[-12:])
    cell = row.split('class="field-where_it_is">', 1)[1]
    shown = cell.split('">', 1)[1].split("</span>", 1)[0]
    assert shown.startswith("Failed: ValueError: card declined: xxx") and shown.endswith("…")
    assert "second line" not in shown and len(shown) <= 110
    assert "second line" in row  # the title keeps it all


@pytest.fixture
def found():
    """Runs a search should tell apart: an owner's, one with a key, two others."""
    alice = User.objects.create_user("Alice")
    owned = wf.add.using(owner=alice).start(1, 2)
    keyed = wf.add.using(idempotency_key="order-1042").start(3, 4)
    other = wf.counted.start(1)
    sleeper = wf.sleeper.start(5)
    return {"owned": owned.id, "keyed": keyed.id, "other": other.id, "sleeper": sleeper.id}


def searched(client, found, term: str) -> set[str]:
    content = page(client.get(CHANGELIST, {"q": term}))
    return {name for name, run_id in found.items() if run_id in content}


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("order-1042", {"keyed"}),
        ("alice", {"owned"}),
        ("ALICE", {"owned"}),
        ("sleep", {"sleeper"}),
        ("tests.counted", {"other"}),
        ("order-9999", set()),
        ("0123456789ab", set()),
    ],
)
def test_search_by_key_owner_and_workflow(superuser, client, found, term, expected):
    assert searched(client, found, term) == expected


def test_search_by_the_short_id_the_list_shows_and_the_full_id(superuser, client, found):
    content = page(client.get(CHANGELIST))
    shown = f"…{found['keyed'].replace('-', '')[-12:]}"
    assert shown in row_of(content, found["keyed"])  # the id the list shows
    assert searched(client, found, shown) == {"keyed"}
    assert searched(client, found, shown.removeprefix("…").upper()) == {"keyed"}
    assert searched(client, found, found["owned"]) == {"owned"}
    assert searched(client, found, f"  {found['other']}  ") == {"other"}


def test_a_term_that_is_a_key_and_part_of_a_workflow_name_finds_both(superuser, client, found):
    found["keyed sleep"] = wf.add.using(idempotency_key="sleep").start(5, 6).id
    assert searched(client, found, "sleep") == {"sleeper", "keyed sleep"}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's plans")
def test_a_search_by_a_workflow_name_is_counted_from_an_index_alone(
    superuser, client, found, monkeypatch
):
    """With a million runs of a workflow, reading each row to test its key (or id) is what
    made the search's count slow: an index that holds the workflow's name (which one is the
    planner's choice) must answer it alone."""
    monkeypatch.setattr(EstimatedPaginator, "EXACT_UP_TO", 3)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
        try:
            with CaptureQueriesContext(connection) as queries:
                page(client.get(CHANGELIST, {"q": "sleep"}))
            counts = [q["sql"] for q in queries if q["sql"].upper().startswith("SELECT COUNT(")]
            assert counts
            for sql in counts:
                cursor.execute(f"EXPLAIN {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                scans = [line for line in plan.splitlines() if " on durable_run" in line]
                assert scans and all("Index Only Scan using durable_run_" in x for x in scans), plan
        finally:
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_bitmapscan")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's plans")
def test_each_search_goes_through_an_index(superuser, client, found):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a table this small would be scanned
        for term in (found["keyed"], found["keyed"][-12:], "order-1042", "alice", "sleep"):
            with CaptureQueriesContext(connection) as queries:
                page(client.get(CHANGELIST, {"q": term}))
            reads = [q["sql"] for q in queries if 'FROM "durable_run"' in q["sql"]]
            assert len(reads) >= 2  # the count and the page
            for sql in reads:
                cursor.execute(f"EXPLAIN {sql}")
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert "Seq Scan on durable_run" not in plan, (term, plan)
        cursor.execute("RESET enable_seqscan")


def test_the_list_does_not_count_past_the_bound(superuser, client, monkeypatch):
    monkeypatch.setattr(EstimatedPaginator, "EXACT_UP_TO", 3)
    for number in range(5):
        wf.add.start(number, 1)
    with CaptureQueriesContext(connection) as queries:
        content = page(client.get(CHANGELIST))
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 4" in sql for sql in counts), counts
    if connection.vendor == "postgresql":
        assert "about 5 workflow runs" in content or "about " in content
    else:
        assert "more than 3 workflow runs" in content
    monkeypatch.setattr(EstimatedPaginator, "EXACT_UP_TO", 10)
    content = page(client.get(CHANGELIST))
    assert "5 workflow runs" in content and "about" not in content.split('class="paginator"')[1]


def test_the_list_counts_ids_only(superuser, client, monkeypatch):
    """The count reads no column the page annotates (parts of each run's error)."""
    monkeypatch.setattr(EstimatedPaginator, "EXACT_UP_TO", 3)
    for number in range(5):
        wf.add.start(number, 1)
    with CaptureQueriesContext(connection) as queries:
        page(client.get(CHANGELIST + "?status__exact=pending"))
    counts = [q["sql"] for q in queries if q["sql"].upper().startswith("SELECT COUNT(")]
    assert counts
    for sql in counts:
        inner = sql.split("FROM", 2)[1]  # what the counted subquery selects
        assert '"error"' not in inner and "workflow_name" not in inner, sql


def test_the_list_reads_a_page_in_the_same_queries_whatever_it_holds(
    superuser, client, django_assert_max_num_queries
):
    def queries_for_a_page() -> int:
        with CaptureQueriesContext(connection) as queries:
            page(client.get(CHANGELIST))
        return len(queries)

    wf.waits_event.start("a", timeout=60)
    wf.boom.start()
    wf.counted.start(2)
    run_ready()
    few = queries_for_a_page()
    for number in range(12):
        wf.waits_event.start(f"e{number}", timeout=60)
        wf.boom.start()
        wf.counted.start(2)
    run_ready()
    Run.objects.filter(status=RunStatus.WAITING).update(
        status=RunStatus.RUNNING,
        claimed_by="host:1:x",
        lease_expires_at=timezone.now() + dt.timedelta(seconds=20),
    )
    assert queries_for_a_page() == few
    with django_assert_max_num_queries(few):
        page(client.get(CHANGELIST))
    assert durable  # the public package imported for the workflows' registration
