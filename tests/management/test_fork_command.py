"""``durable runs fork RUN_ID --from-step N``, and ``--key``: RUN_ID is the run's key."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError

import django_durable as durable
from django_durable.models import Message, Run, RunStatus
from django_durable.testing import run_ready, run_until_finished
from tests.management.calls import durable_cmd, durable_process
from tests.testapp import fork_workflows as fw
from tests.testapp import workflows as wf
from tests.testapp.models import Execution

pytestmark = pytest.mark.django_db(transaction=True)


def failed_run(**options) -> durable.RunHandle:
    fw.BUG["on"] = True
    try:
        handle = fw.fork_orders.using(**options).start("o-1")
        run_until_finished(handle)
    finally:
        fw.BUG["on"] = False
    return handle


def test_fork_prints_the_new_run_s_id_and_the_fork_runs_from_there():
    original = failed_run()
    position = original.error["position"]
    printed = durable_cmd("runs", "fork", original.id, "--from-step", str(position)).strip()
    fork = durable.get_run(printed)
    assert fork.forked_from_id == original.id
    run_until_finished(fork)
    assert fork.status == RunStatus.COMPLETED
    assert Execution.objects.filter(run_id=fork.id).count() == 1  # only the fixed step
    shown = durable_cmd("runs", "show", fork.id)
    assert "Forked from" in shown and original.id in shown
    assert json.loads(durable_cmd("runs", "show", fork.id, "--json"))["forked_from"] == (
        original.id
    )


def test_fork_json_and_an_idempotency_key():
    original = failed_run()
    first = json.loads(
        durable_cmd(
            "runs", "fork", original.id, "--from-step", "4", "--idempotency-key", "k", "--json"
        )
    )
    again = json.loads(
        durable_cmd(
            "runs", "fork", original.id, "--from-step", "4", "--idempotency-key", "k", "--json"
        )
    )
    assert first == again
    assert (first["forked_from"], first["from_step"], first["status"]) == (
        original.id,
        4,
        "pending",
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--from-step", "-1"), "--from-step must be a whole number from 0"),
        (("--from-step", "99"), "recorded 13 operations"),
    ],
)
def test_bad_steps_are_errors_in_words(args, words):
    original = failed_run()
    with pytest.raises(CommandError, match=words):
        durable_cmd("runs", "fork", original.id, *args)
    assert Run.objects.count() == 1


def test_a_run_in_flight_or_unknown_is_an_error_in_words():
    handle = wf.add.start(1, 2)
    with pytest.raises(CommandError, match="only a completed, failed or cancelled run"):
        durable_cmd("runs", "fork", handle.id, "--from-step", "0")
    with pytest.raises(CommandError, match="No run has the id"):
        durable_cmd("runs", "fork", "00000000-0000-0000-0000-000000000000", "--from-step", "0")
    with pytest.raises(CommandError, match="is not a run id"):
        durable_cmd("runs", "fork", "nope", "--from-step", "0")


def test_from_step_is_required_and_a_whole_number():
    original = failed_run()
    for args in ((), ("--from-step", "x")):
        process = durable_process("runs", "fork", original.id, *args)
        assert process.returncode == 2
        assert "--from-step" in process.stderr


def test_key_names_the_run_by_its_idempotency_key_in_every_runs_command():
    original = failed_run(idempotency_key="order-42")
    printed = durable_cmd("runs", "fork", "--key", "order-42", "--from-step", "0").strip()
    assert durable.get_run(printed).forked_from_id == original.id
    assert original.id in durable_cmd("runs", "show", "--key", "order-42")
    assert "pay-1" in durable_cmd("runs", "steps", "order-42", "--key")
    assert "progress" in durable_cmd("runs", "values", "--key", "order-42")
    assert "paid 1" in durable_cmd("runs", "stream", "--key", "order-42", "log")
    waiting = wf.http_receives.using(idempotency_key="approval-1").start("x")
    run_ready()
    durable_cmd("send", "--key", "approval-1", '"yes"', "--topic", "approval")
    assert Message.objects.get(run_id=waiting.id).get_data() == "yes"
    assert f"Asked run {waiting.id} to stop" in durable_cmd("runs", "cancel", "--key", "approval-1")
    assert "WORKFLOW" in durable_cmd("runs", "children", "--key", "order-42")
    with pytest.raises(CommandError, match="No run was started with the idempotency key 'nope'"):
        durable_cmd("runs", "show", "--key", "nope")
