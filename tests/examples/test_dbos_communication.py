"""DBOS's workflow communication (seed 002) in the example project: ``manage.py demo dbos-*``.

The three scenarios run as a user runs them, in one ``manage.py demo`` with a real worker,
on SQLite and on PostgreSQL; each checks what the seed promises and says what it measured.
A second demo on the same database then checks that it starts runs of its own.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.examples.conftest import demo, passed

pytestmark = pytest.mark.slow

NAMES = ("dbos-values", "dbos-messages", "dbos-streams")


@pytest.fixture(scope="module")
def output(demo_env, tmp_path_factory):
    """Run the three scenarios once; return what the command printed."""
    ran = demo(demo_env, *NAMES, log_dir=tmp_path_factory.mktemp("dbos-logs"))
    for name in NAMES:
        passed(ran, name)
    return ran.stdout


def test_clients_read_progress_status_and_all_values(output):
    assert "= the same workflow id started again: HTTP 200, the same run" in output
    assert re.search(r"the client saw progress 0% -> .*-> 100%, each with its status", output)
    assert 'versions kept in the database: {"progress": 4, "result": 1, "status": 4}' in output
    assert 'result: {"steps": 3, "results": [{"n": 30, "fibonacci": 832040}, ' in output
    assert "GET .../values/result/ the same: True" in output
    assert "handle.values(): ['progress', 'result', 'status'] (status 'Completed')" in output
    assert "GET runs/{id}/ 'values' the same: True" in output


def test_get_value_blocks_until_the_run_sets_the_value(output):
    blocked = re.search(
        r"get_value\(run, 'result', timeout=\.\.\.\) was called while the run was "
        r"(pending|running), with no result yet, and returned (\d+\.\d\d)s later, when the "
        r"run set it",
        output,
    )
    assert blocked, output  # the scenario checks that the value is the run's result


def test_a_waiting_run_is_approved_rejected_or_times_out(output):
    assert "= 3 async runs waiting in await ctx.recv(), 0 held by a worker" in output
    assert 'POST .../messages/ {"approved": true, "message": "Approved by admin"} -> 202' in output
    assert re.search(r"approve: run \w+ waited .*, then approved, 3 steps run", output)
    assert re.search(r"reject: run \w+ waited .*, then rejected, 0 steps run", output)
    silence = re.search(r"silence: run \w+ waited (\d+\.\d+)s, then timed out", output)
    assert silence and float(silence[1]) >= 1.95, output  # a (demo) day, two clocks
    assert "2 messages stored, 2 taken by ctx.recv" in output
    assert "a late approval to the timed-out run: HTTP 409 run_finished, 0 stored for it" in output


def test_a_stream_is_read_live_over_sse_as_json_pages_and_from_python(output):
    live = re.search(r"SSE \(text/event-stream\): 12 items, offsets 0-11, (\d+) of them", output)
    assert live and int(live[1]) >= 2
    assert "then 'event: close'" in output
    assert re.search(r"JSON pages: \d+ items while the run worked \(closed False\)", output)
    assert "(closed True); the same items as over SSE: True" in output
    assert "reconnected with Last-Event-ID: 5: offsets 6-11, then 'event: close'" in output
    python = re.search(
        r"follow=True\) in Python: 12 items, (\d+) of them while the run was still working; "
        r"the stream's items in order: True",
        output,
    )
    assert python and int(python[1]) >= 2, output


def test_a_second_demo_on_the_same_database_starts_runs_of_its_own(output, demo_env, tmp_path):
    # ``output`` ran the three scenarios on this module's database already.
    ran = demo(demo_env, *NAMES, log_dir=tmp_path)
    for name in NAMES:
        passed(ran, name)
    assert "3 of 3 scenarios as their seeds show" in ran.stdout


def test_the_coming_from_page_shows_the_workflows_as_they_run():
    code = (ROOT / "example_project" / "dbos_communication" / "workflows.py").read_text().strip()
    assert code in (ROOT / "docs" / "coming-from" / "dbos.md").read_text()
