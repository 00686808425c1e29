"""``durable runs show`` in a sentence, with its worker and last step; ``runs cancel --wait``."""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError
from django.db import connection

import django_durable as durable
from django_durable import Worker, display
from django_durable.declarations.registry import unregister
from django_durable.models import Run, RunStatus
from django_durable.testing import run_all, run_ready
from tests.conftest import wait_for
from tests.management.calls import cancel_requested, durable_cmd, durable_process, work_once
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

# A moment as display.moment() writes it: "14:25 (12 s ago)" (the relative part may move on).
MOMENT = r"\d\d:\d\d \((now|\d+ s ago|in \d+ s)\)"


def sentence_pattern(run_id: str) -> str:
    """The summary of a run with its moments made patterns, to match what a command printed."""
    sentence = display.summarize(Run.objects.get(pk=run_id)).sentence
    return re.sub(MOMENT, lambda _: MOMENT, re.escape(sentence).replace(r"\ ", " "))


# --- runs show ------------------------------------------------------------------------------


def test_show_begins_with_the_summary_of_a_waiting_run():
    handle = wf.waits_event.start("approved:7")
    run_ready()
    lines = durable_cmd("runs", "show", handle.id).splitlines()
    assert re.fullmatch(r"Waiting for event `approved:7` since " + MOMENT, lines[0])
    assert re.fullmatch(sentence_pattern(handle.id), lines[0])
    assert lines[1] == "" and lines[2] == f"Run:             {handle.id}"
    assert "Worker:          -" in lines
    step = "Last step:       #0 event `approved:7`: waiting, 1 attempt, "
    assert any(line.startswith(step) and re.fullmatch(MOMENT, line[len(step) :]) for line in lines)


def test_show_names_the_worker_that_holds_a_running_run():
    handle = wf.add.start(1, 2)
    worker = Worker()
    [claim] = worker.claim(1)  # running, leased, not executed
    output = durable_cmd("runs", "show", handle.id)
    first, *lines = output.splitlines()
    host_pid = ":".join(worker.id.split(":")[:2])
    assert first.startswith(f"Running on worker {host_pid}, lease renewed ")
    [line] = [line for line in lines if line.startswith("Worker:")]
    assert re.fullmatch(rf"Worker: +{re.escape(worker.id)} \(lease until {MOMENT}\)", line)
    assert "Last step:       -" in lines
    data = json.loads(durable_cmd("runs", "show", handle.id, "--json"))
    assert data["claimed_by"] == worker.id and data["last_step"] is None
    lease = Run.objects.get(pk=handle.id).lease_expires_at
    assert abs(datetime.fromisoformat(data["lease_expires_at"]) - lease) < timedelta(
        milliseconds=1
    )  # JSON keeps milliseconds
    assert data["summary"]["worker"] == host_pid and data["summary"]["waiting"] == ""
    assert claim.run_id


def test_show_json_carries_the_summary_fields():
    failed = wf.fatal.start()
    waiting = wf.waits_event.start("approved:7", timeout=600)
    run_ready()
    data = json.loads(durable_cmd("runs", "show", failed.id, "--json"))
    summary = display.summarize(Run.objects.get(pk=failed.id))
    assert data["summary"] == {
        "sentence": summary.sentence, "waiting": "", "name": "", "since": None, "until": None,
        "step": "charge", "worker": "",
    }  # fmt: skip
    assert summary.sentence.startswith("Failed at step `charge` after 1 attempt: FatalError")
    assert durable_cmd("runs", "show", failed.id).splitlines()[0] == summary.sentence
    assert data["last_step"]["name"] == "charge" and data["last_step"]["status"] == "failed"
    assert data["last_step"]["attempts"] == 1 and data["claimed_by"] is None
    waits = json.loads(durable_cmd("runs", "show", waiting.id, "--json"))["summary"]
    assert (waits["waiting"], waits["name"]) == ("event", "approved:7")
    run = Run.objects.get(pk=waiting.id)
    assert run.wake_at is not None
    assert abs(datetime.fromisoformat(waits["until"]) - run.wake_at) < timedelta(milliseconds=1)
    assert datetime.fromisoformat(waits["since"]) <= run.wake_at


def test_show_a_completed_run_says_so_first():
    handle = wf.add.start(2, 3)
    run_all()
    lines = durable_cmd("runs", "show", handle.id).splitlines()
    assert re.fullmatch(r"Completed in [\d.]+m?s, 1 step", lines[0])
    assert any(
        line.startswith("Last step:       #0 step `add`: completed, 1 attempt") for line in lines
    )


# --- runs cancel --wait ---------------------------------------------------------------------


def test_cancel_wait_says_how_the_run_ended(worker):
    handle = wf.cleanup.start()
    worker.run_once()  # sleeping for an hour
    thread = work_once(cancel_requested(handle.id))
    try:
        output = durable_cmd(
            "runs", "cancel", handle.id, "--reason", "customer left", "--wait", "20"
        )
    finally:
        thread.join()
    asked, ended = output.splitlines()
    assert asked.startswith(f"Asked run {handle.id} to stop: ")
    assert re.fullmatch(rf"Run {handle.id} ended: Cancelled {MOMENT}: customer left", ended)
    assert handle.refresh().status == RunStatus.CANCELLED


def test_cancel_wait_without_seconds_waits_as_long_as_it_takes(worker):
    handle = wf.cleanup.start()
    worker.run_once()
    thread = work_once(cancel_requested(handle.id))
    try:
        output = durable_cmd("runs", "cancel", handle.id, "--wait")
    finally:
        thread.join()
    assert re.fullmatch(
        rf"Run {handle.id} ended: Cancelled {MOMENT}: cancelled", output.splitlines()[1]
    )


@pytest.fixture
def last_step_gated():
    """A workflow whose one step waits for a gate, then returns: no operation comes after it."""
    entered, gate = threading.Event(), threading.Event()

    def body() -> str:
        entered.set()
        return "through" if gate.wait(20) else "timed out"

    @durable.workflow(name="cli.last_step_gated")
    def last_step_gated(ctx: durable.Context) -> str:
        return ctx.step("gate", body)

    yield last_step_gated, entered, gate
    gate.set()
    unregister("cli.last_step_gated")


def test_cancel_wait_says_when_the_run_finished_first(last_step_gated):
    workflow, entered, gate = last_step_gated
    handle = workflow.start()

    def open_gate() -> None:  # once the command has asked: the step returns, so does the run
        try:
            wait_for(cancel_requested(handle.id), message="the cancel request")
            gate.set()
        finally:
            connection.close()

    executing = work_once(lambda: True)
    opener = threading.Thread(target=open_gate)
    opener.start()
    try:
        assert entered.wait(20), "the run never entered its step"
        output = durable_cmd("runs", "cancel", handle.id, "--wait", "20")
    finally:
        gate.set()
        opener.join()
        executing.join()
    assert handle.refresh().status == RunStatus.COMPLETED
    assert handle.result() == "through"
    assert re.fullmatch(
        rf"Run {handle.id} ended before it stopped: Completed in [\d.]+m?s, 1 step",
        output.splitlines()[1],
    )


def test_cancel_wait_times_out_saying_the_run_is_still_stopping(worker):
    handle = wf.cleanup.start()
    worker.run_once()
    with pytest.raises(
        CommandError,
        match=rf"^Run {handle.id} is still stopping after 0\.2s \(status: pending\): a worker",
    ):
        durable_cmd("runs", "cancel", handle.id, "--wait", "0.2")
    assert handle.refresh().status == RunStatus.PENDING  # asked: a worker will cancel it


def test_cancel_wait_exits_non_zero_on_a_timeout(worker):
    handle = wf.cleanup.start()
    worker.run_once()
    done = durable_process("runs", "cancel", handle.id, "--wait", "0.1")
    assert done.returncode == 1
    assert done.stdout.startswith(f"Asked run {handle.id} to stop")
    assert f"CommandError: Run {handle.id} is still stopping after 0.1s" in done.stderr


def test_cancel_wait_of_a_run_cancelled_at_once_and_bad_waits():
    handle = wf.add.start(1, 2)
    for bad, message in [("-1", "--wait cannot be negative"), ("nan", "--wait must be a number")]:
        with pytest.raises(CommandError, match=message):
            durable_cmd("runs", "cancel", handle.id, "--wait", bad)
    assert handle.refresh().status == RunStatus.PENDING  # a bad --wait cancels nothing
    assert (
        durable_cmd("runs", "cancel", handle.id, "--wait", "5") == f"Cancelled run {handle.id}.\n"
    )


# --- runs wake ------------------------------------------------------------------------------


def test_wake_ends_a_sleep_now_and_the_run_goes_on():
    napper = wf.sleeper.start(3600)
    run_ready()
    assert napper.refresh().status == RunStatus.WAITING
    said = durable_cmd("runs", "wake", napper.id)
    assert said.strip() == f"Woke run {napper.id}: its sleep ended; a worker goes on with it now."
    run_all()
    assert napper.refresh().status == RunStatus.COMPLETED


def test_wake_brings_a_wait_timeout_forward():
    waiter = wf.waits_event.start("never.comes", timeout=3600)
    run_ready()
    said = durable_cmd("runs", "wake", waiter.id)
    assert "its wait's timeout came (it times out unless what it waits for arrived)" in said


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (lambda: wf.waits_event.start("no.limit"), "with no time limit: send it what it waits for"),
        (lambda: wf.add.start(1, 2), "not waiting: nothing to wake"),
    ],
)
def test_wake_refuses_in_words_a_run_with_nothing_to_wake(start, expected):
    handle = start()
    run_ready()
    before = Run.objects.get(pk=handle.id)
    with pytest.raises(CommandError, match=expected):
        durable_cmd("runs", "wake", handle.id)
    after = Run.objects.get(pk=handle.id)
    assert (after.status, after.wake_at, after.updated_at) == (
        before.status,
        before.wake_at,
        before.updated_at,
    )


def test_wake_of_an_unknown_run_says_so():
    with pytest.raises(CommandError, match="No run"):
        durable_cmd("runs", "wake", "01a1fcb2-5be0-7b41-8f0e-2d3c4a5b6c7d")
