"""Polos's event-triggered workflows (seed 001) in the example project: ``manage.py demo polos-*``.

The three scenarios run as a user runs them, in one ``manage.py demo`` with a real worker,
on SQLite and on PostgreSQL; each checks what the seed promises and says what it measured.
A second demo on the same database then checks that each looks only at its own events.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT
from tests.examples.conftest import demo, passed

pytestmark = pytest.mark.slow

NAMES = ("polos-triggered", "polos-batched", "polos-request-response")


@pytest.fixture(scope="module")
def output(demo_env, tmp_path_factory):
    """Run the three scenarios once; return what the command printed."""
    ran = demo(demo_env, *NAMES, log_dir=tmp_path_factory.mktemp("polos-logs"))
    for name in NAMES:
        passed(ran, name)
    return ran.stdout


def test_each_orders_created_event_starts_one_run(output):
    assert (
        "= 4 orders/created events stored: 3 published inside polos.place_order runs "
        "(ctx.emit_event), 1 by a view" in output
    )
    assert "= 4 polos.on_order_created runs for 4 events, 0 started twice" in output
    confirmed = re.findall(
        r"order \w+-(\d): event #\d+ from .* later: completed, 'Order \w+-\1 confirmed", output
    )
    assert sorted(confirmed) == ["1", "2", "4"], output


def test_a_large_order_waits_for_its_approval_holding_no_worker(output):
    assert re.search(r"Waiting for event `approvals/\w+-4` since", output)
    assert "= held by no worker while it waits" in output
    assert re.search(
        r"order \w+-4 \(39\.90 > 30\.00\): waited \d+\.\d\ds for approvals/\w+-4, received "
        r'event #\d+: \{"data": \{"approved": true, "by": "manager@shop"\}, '
        r'"topic": "approvals/\w+-4", "type": "approved"\}',
        output,
    )


def test_a_large_order_nobody_approves_is_held_and_not_charged(output):
    held = re.search(
        r"order \w+-3 \(249\.00 > 30\.00\): nobody approved; the wait timed out after "
        r"(\d+\.\d\d)s \(timeout 3s\), not charged: held",
        output,
    )
    assert held and float(held[1]) >= 2.95, output


def test_full_batches_start_at_once_and_a_partial_one_after_its_timeout(output):
    assert "= 23 events -> 3 runs of 10, 10, 3 events" in output
    assert "every event in exactly one batch: True" in output
    waits = [float(s) for s in re.findall(r"started (\d+\.\d+)s after its first event", output)]
    assert len(waits) == 3 and max(waits[:2]) < 1.0 <= waits[2] + 0.05, waits


def test_a_request_is_answered_by_a_triggered_run_or_times_out(output):
    answers = re.findall(r"\(requests/quotes\): answered by run \w+ after .*: (\{.*\})", output)
    assert answers == [
        '{"price": "10.00", "product": "widget", "quantity": 4}',
        '{"price": "5.00", "product": "gadget", "quantity": 2}',
    ]
    timed_out = re.search(
        r"\(requests/refunds\): nobody answered; the wait timed out after (\d+\.\d\d)s", output
    )
    assert timed_out and float(timed_out[1]) >= 2.95, output
    assert (
        "2 of 3 requests answered, by 2 triggered polos.quote_service runs; 1 timed out" in output
    )


def test_a_second_demo_on_the_same_database_sees_only_its_own_events(output, demo_env, tmp_path):
    # ``output`` ran the three scenarios on this module's database already.
    ran = demo(demo_env, *NAMES, log_dir=tmp_path)
    for name in NAMES:
        passed(ran, name)
    assert "3 of 3 scenarios as their seeds show" in ran.stdout


def test_the_coming_from_page_shows_the_workflows_as_they_run():
    code = (ROOT / "example_project" / "polos_events" / "workflows.py").read_text().strip()
    assert code in (ROOT / "docs" / "coming-from" / "polos.md").read_text()
