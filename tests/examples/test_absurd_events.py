"""Absurd's event demo (seed 000) in the example project: ``manage.py demo absurd-*``.

The three scenarios run as a user runs them, in one ``manage.py demo`` with a real worker,
on SQLite and on PostgreSQL; each checks what the seed promises and says what it measured.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.examples.conftest import demo, passed

pytestmark = pytest.mark.slow

NAMES = ("absurd-events", "absurd-broadcast", "absurd-timeout")


@pytest.fixture(scope="module")
def output(demo_env, tmp_path_factory):
    """Run the three scenarios once; return what the command printed."""
    ran = demo(demo_env, *NAMES, log_dir=tmp_path_factory.mktemp("absurd-logs"))
    for name in NAMES:
        passed(ran, name)
    return ran.stdout


def test_the_order_waits_for_its_payment_and_its_delivery(output):
    # The payment after the wait: the run suspends at each wait, held by no worker.
    assert re.search(r"Waiting for event `payment\.confirmed:order-1-\w+`", output)
    assert re.search(r"Waiting for event `shipment\.delivered:order-1-\w+`", output)
    assert "= waiting, held by no worker; checkpointed: reserve-inventory" in output
    assert "claimed by a worker 3 times: once to start, once after each event" in output
    assert re.search(
        r"payment event #\d+ emitted \d+\.\d\ds after the run reached its wait", output
    )
    assert len(re.findall(r'completed: \{.*"status": "completed", "tracking_number"', output)) == 2


def test_a_payment_emitted_before_the_wait_is_kept_and_received_at_once(output):
    assert re.search(r"the payment wait received event #\d+ at once: it was emitted", output)
    assert "claimed by a worker 2 times: to start, and after the delivery" in output


def test_one_broadcast_emission_wakes_every_waiting_run(output):
    assert re.search(r"= 5 runs waiting for daily\.report\.ready:\S+, 0 held by a worker", output)
    assert re.search(r"= 5 runs completed \d+\.\d\ds after the one emission; events they", output)
    assert re.search(r"events stored under daily\.report\.ready:\S+: 1\n", output)
    assert re.search(r"it received event #\d+ at once, claimed 1 time", output)


def test_no_payment_in_time_takes_the_timeout_branch(output):
    assert re.search(r"the wait recorded EventTimeout after (\d+\.\d\d)s", output)
    assert re.search(
        r'completed through its timeout branch: \{.*"reason": "no payment in time", '
        r'"released": \["widget-A", "gadget-B"\], "status": "cancelled"\}',
        output,
    )
    assert re.search(
        r"records: reserve-inventory \(completed\) -> payment\.confirmed:order-3-\w+ \(failed\) "
        r"-> release-inventory \(completed\)",
        output,
    )


def test_the_coming_from_page_shows_the_workflows_as_they_run():
    code = (ROOT / "example_project" / "absurd_events" / "workflows.py").read_text().strip()
    assert code in (ROOT / "docs" / "coming-from" / "absurd.md").read_text()
