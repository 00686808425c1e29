"""Edda's event waiting (seed 003) in the example project: ``manage.py demo edda-*``.

The four scenarios run as a user runs them, in one ``manage.py demo`` with real workers, on
SQLite and on PostgreSQL; each checks what the seed promises and says what it measured.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.examples.conftest import demo, passed

pytestmark = pytest.mark.slow

NAMES = ("edda-typed-events", "edda-timer", "edda-many-waiting", "edda-cloudevents")


@pytest.fixture(scope="module")
def output(demo_env, tmp_path_factory):
    """Run the four scenarios once; return what the command printed."""
    ran = demo(demo_env, *NAMES, log_dir=tmp_path_factory.mktemp("edda-logs"))
    for name in NAMES:
        passed(ran, name)
    return ran.stdout


def test_a_typed_payment_arrives_as_the_model(output):
    assert "= 3 of 3 runs waiting, held by no worker" in output
    assert "event.data was a PaymentCompleted: amount 99.99 (float)" in output


def test_a_payment_the_model_rejects_fails_the_run_at_once_in_pydantics_words(output):
    assert "run failed at once: EventDataInvalid, attempt 1 of the 3 the workflow allows" in output
    assert "does not match PaymentCompleted: 1 validation error for PaymentCompleted" in output
    assert "input_value='ninety-nine'" in output


def test_no_payment_takes_the_timeout_branch(output):
    assert re.search(
        r"the wait recorded EventTimeout after \d+\.\d\ds; records: start_payment_processing ",
        output,
    )
    assert re.search(
        r'the run returned \{"payment_id": "PAY-ORD-303-\w+", '
        r'"reason": "payment_timeout", "status": "cancelled"\}',
        output,
    )


def test_a_durable_timer_then_the_check(output):
    assert "Sleeping until" in output
    found = re.findall(
        r"the check ran (\d+\.\d\d)s after the timer started and found (.*?);", output
    )
    assert len(found) == 2, output
    assert all(float(slept) >= 0.95 for slept, _ in found)
    (_, paid), (_, unpaid) = found
    assert '"paid": true' in paid
    assert unpaid == '{"paid": false}'


def test_one_worker_process_serves_fifty_waiting_runs(output):
    assert re.search(r"= 50 runs waiting, \d+\.\d\ds after they were started", output)
    assert re.search(
        r"= worker processes alive on edda-loans: 1 \(pid \d+, concurrency 4\)", output
    )
    assert "= runs that worker holds now: 0" in output
    assert re.search(r"LOAN-370-\w+ completed in \d+\.\d\ds, by pid \d+", output)
    assert re.search(
        r"= 50 of 50 approved and completed .* by 1 worker process \(pid \d+\)", output
    )


def test_cloudevents_posted_over_http_resume_the_runs(output):
    structured = re.search(
        r"= 202 \{\"id\": (\d+)\}\n.*again.*\n  = 202 \{\"id\": (\d+)\}; events stored: 1", output
    )
    assert structured and structured[1] == structured[2], output
    assert "idempotency key ce:payment-service:event-123-" in output
    returned = re.findall(r"ORD-38[01]-\w+: the run returned (.*)", output)
    assert len(returned) == 2, output
    assert all('"source": "payment-service", "status": "completed"' in line for line in returned)
    assert '= 400 {"detail": "Only CloudEvents specversion 1.0 is supported."' in output
    assert "events stored: 0" in output


def test_the_coming_from_page_shows_the_workflows_as_they_run():
    code = (ROOT / "example_project" / "edda_events" / "workflows.py").read_text().strip()
    assert code in (ROOT / "docs" / "coming-from" / "edda.md").read_text()
