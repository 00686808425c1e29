"""``manage.py durable``: every subcommand's output and --json, its errors, and prune."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.core.conf import get_settings
from django_durable.management.commands.durable import parse_duration
from django_durable.models import Event, Message, Run, RunStatus, Step, WorkerProcess
from django_durable.store import pruning
from django_durable.testing import run_all
from tests.conftest import ROOT, wait_for
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def durable_cmd(*args: str) -> str:
    """Run ``manage.py durable ARGS`` and return what it printed."""
    out = io.StringIO()
    call_command("durable", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def age(run_id: str, **delta: float) -> None:
    """Pretend the run finished ``delta`` ago (test set-up)."""
    Run.objects.filter(pk=run_id).update(finished_at=timezone.now() - timedelta(**delta))


@pytest.fixture
def finished():
    """A completed and a failed run, executed to the end."""
    added = wf.add.using(idempotency_key="add-2-3").start(2, b=3)
    failed = wf.boom.start()
    run_all()
    return added.refresh(), failed.refresh()


# --- runs list / show / steps -------------------------------------------------------------


def test_runs_list_prints_a_table_newest_first(finished):
    added, failed = finished
    lines = durable_cmd("runs", "list").splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATUS", "CREATED", "FINISHED"]
    assert lines[1].split()[:3] == [failed.id, "tests.boom", "failed"]
    assert lines[2].split()[:3] == [added.id, "tests.add", "completed"]


def test_runs_list_filters_and_limits(finished):
    added, failed = finished
    pending = wf.add.start(1, 1)
    assert added.id in durable_cmd("runs", "list", "--workflow", "tests.add")
    assert failed.id not in durable_cmd("runs", "list", "--workflow", "tests.add")
    only_failed = durable_cmd("runs", "list", "--status", "failed")
    assert failed.id in only_failed and added.id not in only_failed
    two = durable_cmd("runs", "list", "--status", "failed", "pending")
    assert failed.id in two and pending.id in two and added.id not in two
    assert (
        durable_cmd("runs", "list", "--status", "failed", "--status", "completed").count("tests.")
        == 2
    )
    assert len(durable_cmd("runs", "list", "--limit", "1").splitlines()) == 2


def test_runs_list_json(finished):
    added, failed = finished
    data = json.loads(durable_cmd("runs", "list", "--json"))
    assert [row["id"] for row in data] == [failed.id, added.id]
    row = data[1]
    assert row["workflow_name"] == "tests.add" and row["status"] == "completed"
    assert row["queue"] == "default" and row["attempt"] == 1 and row["waiting_for"] == ""
    assert row["created_at"] and row["started_at"] and row["finished_at"]


def test_runs_show_a_completed_run(finished):
    added, _ = finished
    output = durable_cmd("runs", "show", added.id)
    assert f"Run:             {added.id}" in output
    assert "Workflow:        tests.add" in output
    assert "Status:          completed" in output
    assert "Queue:           default (priority 0)" in output
    assert "Idempotency key: add-2-3" in output
    assert 'Input:\n  {\n    "args": [\n      2\n    ],\n    "kwargs": {\n      "b": 3' in output
    assert "Result:\n  5" in output
    assert "Error" not in output


def test_runs_show_a_failed_run_with_its_traceback(finished):
    _, failed = finished
    output = durable_cmd("runs", "show", failed.id)
    assert "Status:          failed" in output
    assert "Error:           ValueError: boom" in output
    assert "Traceback:\n  Traceback (most recent call last):" in output
    assert 'raise ValueError("boom")' in output
    assert "Result" not in output


def test_runs_show_json(finished):
    added, failed = finished
    data = json.loads(durable_cmd("runs", "show", added.id, "--json"))
    assert data["id"] == added.id and data["status"] == "completed"
    assert data["input"] == {"args": [2], "kwargs": {"b": 3}}
    assert data["result"] == 5 and data["error"] is None
    assert data["idempotency_key"] == "add-2-3" and data["duration_seconds"] >= 0
    error = json.loads(durable_cmd("runs", "show", failed.id, "--json"))["error"]
    assert error["type"] == "ValueError" and error["message"] == "boom"
    assert "Traceback" in error["traceback"]


def test_runs_show_decodes_stored_types():
    handle = wf.types.start(timezone.now(), Decimal("1.5"))
    run_all()
    output = durable_cmd("runs", "show", handle.id)
    assert '"amount": "3.0"' in output
    assert json.loads(durable_cmd("runs", "show", handle.id, "--json"))["result"]["tuple"] == [1, 2]


def test_runs_steps():
    handle = wf.fatal.start()
    done = wf.add.start(2, 3)
    run_all()
    lines = durable_cmd("runs", "steps", handle.id).splitlines()
    assert lines[0].split()[:6] == ["#", "KIND", "NAME", "STATUS", "ATTEMPTS", "DURATION"]
    assert lines[1].split()[:5] == ["0", "step", "charge", "failed", "1"]
    assert lines[1].endswith("django_durable.exceptions.FatalError: card declined")
    row = durable_cmd("runs", "steps", done.id).splitlines()[1]
    assert row.split()[:5] == ["0", "step", "add", "completed", "1"] and row.endswith(" 5")


def test_runs_steps_json():
    handle = wf.types.start(timezone.now(), Decimal("2"))
    run_all()
    steps = json.loads(durable_cmd("runs", "steps", handle.id, "--json"))
    assert [(s["position"], s["kind"], s["name"]) for s in steps] == [
        (0, "step", "later"),
        (1, "step", "amount"),
    ]
    assert steps[1]["result"] == "4" and steps[1]["status"] == "completed"
    assert steps[0]["attempts"] == 1 and steps[0]["error"] is None


@pytest.mark.parametrize("action", ["show", "steps"])
def test_a_malformed_or_unknown_run_id_is_a_clear_error(action):
    with pytest.raises(CommandError, match=r"'nope' is not a run id \(run ids are UUIDs\)"):
        durable_cmd("runs", action, "nope")
    missing = str(uuid.uuid4())
    with pytest.raises(CommandError, match=f"No run has the id '{missing}'"):
        durable_cmd("runs", action, missing)


def test_runs_list_rejects_a_bad_status_or_limit():
    with pytest.raises(CommandError, match="invalid choice: 'done'"):
        durable_cmd("runs", "list", "--status", "done")
    for limit in ("0", "-1", "1000001", "99999999999999999999"):
        with pytest.raises(CommandError, match=r"^--limit must be a whole number from 1 to"):
            durable_cmd("runs", "list", "--limit", limit)


# --- start ----------------------------------------------------------------------------


def test_start_prints_the_run_id_and_stores_the_options():
    output = durable_cmd(
        "start",
        "tests.add",
        "--args",
        "[2]",
        "--kwargs",
        '{"b": 3}',
        "--queue",
        "other",
        "--priority",
        "7",
        "--idempotency-key",
        "cli-1",
        "--delay",
        "60",
    )
    run = Run.objects.get(pk=output.strip())
    assert run.get_input() == ([2], {"b": 3})
    assert (run.queue, run.priority, run.idempotency_key) == ("other", 7, "cli-1")
    assert run.available_at > timezone.now() + timedelta(seconds=50)
    assert durable_cmd("start", "tests.add", "--idempotency-key", "cli-1").strip() == str(run.id)


def test_start_without_arguments_and_with_wait():
    handle = wf.add.using(idempotency_key="k").start(20, 22)
    run_all()
    output = durable_cmd("start", "tests.add", "--idempotency-key", "k", "--wait", "5")
    assert output.splitlines() == [handle.id, "42"]
    run_id = durable_cmd("start", "tests.values").strip()
    assert Run.objects.get(pk=run_id).get_input() == ([], {})


def test_start_wait_follows_a_run_executed_by_a_worker():
    def work() -> None:
        try:
            wait_for(Run.objects.exists, message="the command to start a run")
            run_all()
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        output = durable_cmd("start", "tests.add", "--args", "[1, 2]", "--wait", "15")
    finally:
        thread.join()
    run_id, result = output.splitlines()
    assert result == "3" and Run.objects.get(pk=run_id).status == RunStatus.COMPLETED


def test_start_wait_reports_a_failure_or_a_timeout():
    wf.boom.using(idempotency_key="b").start()
    run_all()
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"of 'tests\.boom' failed: ValueError: boom"):
        call_command(
            "durable",
            *("start", "tests.boom", "--idempotency-key", "b", "--wait", "5"),
            stdout=io.StringIO(),
            stderr=err,
        )
    assert 'raise ValueError("boom")' in err.getvalue()
    with pytest.raises(CommandError, match=r"did not finish within 0\.2 seconds"):
        durable_cmd("start", "tests.add", "--args", "[1, 2]", "--wait", "0.2")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], r"No workflow named 'nope' is registered"),
        (["tests.add", "--args", "[1,"], r"--args is not valid JSON \(Expecting"),
        (["tests.add", "--args", '{"a": 1}'], r"--args must be an array in JSON, not an object"),
        (["tests.add", "--args", "3"], r"--args must be an array in JSON, not a number"),
        (["tests.add", "--kwargs", "[1]"], r"--kwargs must be an object in JSON, not an array"),
        (["tests.add", "--kwargs", "null"], r"--kwargs must be an object in JSON, not null"),
        (["tests.add", "--kwargs", "{'b': 1}"], r"--kwargs is not valid JSON"),
        (["tests.add", "--delay", "-1"], r"--delay cannot be negative"),
        (["tests.add", "--delay", "1e12"], r"^--delay must be under 100 years"),
        (["tests.add", "--delay", "nan"], r"^--delay must be a number of seconds, not NaN"),
        (["tests.add", "--priority", "99999999999"], r"^--priority must be a whole number from"),
        (["tests.add", "--wait", "nan"], r"^--wait must be a number of seconds, not NaN"),
        (["tests.add", "--args", '["\\u0000"]'], r"NUL character"),
    ],
)
def test_start_refuses_bad_input_with_a_clear_error(args, message):
    with pytest.raises(CommandError, match=message):
        durable_cmd("start", *args)
    assert not Run.objects.exists()


def test_an_idempotency_key_of_another_workflow_is_a_command_error():
    wf.add.using(idempotency_key="k").start(1, 2)
    with pytest.raises(CommandError, match="already started run"):
        durable_cmd("start", "tests.values", "--idempotency-key", "k")


# --- send / emit / events ------------------------------------------------------------------


def test_send_delivers_a_message_that_the_run_receives(worker):
    handle = wf.receives.start(2, "orders")
    worker.run_once()
    first = durable_cmd("send", handle.id, '{"sku": "A-1", "qty": 2}', "--topic", "orders")
    second = durable_cmd("send", handle.id, "[1, 2]", "--topic", "orders", "--idempotency-key", "k")
    again = durable_cmd(
        "send", handle.id, '"ignored"', "--topic", "orders", "--idempotency-key", "k"
    )
    assert again == second and int(first) < int(second)
    run_all()
    assert handle.result(timeout=1) == [{"sku": "A-1", "qty": 2}, [1, 2]]
    assert Message.objects.filter(run_id=handle.id).count() == 2


def test_send_without_a_topic_and_with_json_scalars():
    handle = wf.add.start(1, 2)
    for text, expected in [("null", None), ("3.5", 3.5), ('"hi"', "hi"), ("false", False)]:
        message = Message.objects.get(pk=int(durable_cmd("send", handle.id, text)))
        assert message.get_data() == expected and message.topic == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "1"], r"'nope' is not a run id \(run ids are UUIDs\)"),
        ([str(uuid.UUID(int=7)), "1"], r"No run has the id '00000000-0000-0000-0000-000000000007'"),
        (["RUN", "{'a': 1}"], r"MESSAGE_JSON is not valid JSON \(Expecting property name"),
        (["RUN", "[1,"], r"MESSAGE_JSON is not valid JSON"),
        (["RUN", "1", "--topic", ""], r"A message topic name must be a non-empty string"),
        (["RUN", "1", "--topic", "t" * 201], r"A message topic name must be a non-empty string"),
        (["RUN", '"\\u0000"'], r"NUL character"),
        (["RUN", "1", "--idempotency-key", "k" * 256], r"idempotency_key= must be a string"),
    ],
)
def test_send_refuses_bad_input_with_a_clear_error(args, message):
    handle = wf.add.start(1, 2)
    args = [handle.id if arg == "RUN" else arg for arg in args]
    with pytest.raises(CommandError, match=message):
        durable_cmd("send", *args)
    assert not Message.objects.exists()


def test_send_and_emit_refuse_a_payload_over_the_limit(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 100}
    handle = wf.add.start(1, 2)
    big = json.dumps("x" * 200)
    with pytest.raises(
        CommandError, match=r"The message is 202 bytes of JSON, over the limit of 100"
    ):
        durable_cmd("send", handle.id, big)
    with pytest.raises(CommandError, match=r"The data of event 'big' is 202 bytes of JSON"):
        durable_cmd("emit", "big", big)
    assert not Message.objects.exists() and not Event.objects.exists()


def test_emit_wakes_a_waiting_run(worker):
    handle = wf.waits_event.start("approved:doc-7")
    worker.run_once()
    output = durable_cmd(
        "emit", "approved:doc-7", '{"by": "ada"}', "--source", "cli", "--type", "approval"
    )
    event_id = Event.objects.get(name="approved:doc-7").pk
    assert output == f"Emitted event {event_id} (approved:doc-7): woke 1 run.\n"
    run_all()
    result = handle.result(timeout=1)
    assert result["id"] == event_id
    assert (result["data"], result["source"], result["type"]) == ({"by": "ada"}, "cli", "approval")


def test_emit_with_an_idempotency_key_emits_once():
    first = json.loads(durable_cmd("emit", "paid:1", "1", "--idempotency-key", "psp-9", "--json"))
    again = json.loads(durable_cmd("emit", "paid:1", "2", "--idempotency-key", "psp-9", "--json"))
    assert again == {**first, "stored": False} and first["stored"] is True
    assert Event.objects.filter(name="paid:1").count() == 1


def test_emit_without_data_stores_null():
    event = Event.objects.get(pk=json.loads(durable_cmd("emit", "tick", "--json"))["id"])
    assert (event.name, event.get_data(), event.source, event.type) == ("tick", None, "", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([""], r"An event name must be a non-empty string"),
        (["e" * 201], r"An event name must be a non-empty string"),
        (["tick", "{nope}"], r"DATA_JSON is not valid JSON"),
        (["tick", "1", "--source", "s" * 256], r"source= must be a string of at most 255"),
        (["tick", "[" * 100_000 + "]" * 100_000], r"DATA_JSON is nested too deeply|not valid JSON"),
    ],
)
def test_emit_refuses_bad_input_with_a_clear_error(args, message):
    with pytest.raises(CommandError, match=message):
        durable_cmd("emit", *args)
    assert not Event.objects.exists()


@pytest.fixture
def emitted():
    handle = wf.emits.start("orders.shipped:7")
    run_all()
    return {
        "shipped": Event.objects.get(name="orders.shipped:7").pk,
        "paid-1": durable.emit_event("payment.confirmed:1", {"amount": 10}, type="paid"),
        "paid-12": durable.emit_event("payment.confirmed:12", "x" * 500, source="psp"),
        "refund": durable.emit_event("payment.refunded:1"),
        "run": handle.id,
    }


def test_events_lists_the_newest_first(emitted):
    lines = durable_cmd("events").splitlines()
    assert lines[0].split() == ["ID", "NAME", "TYPE", "SOURCE", "CREATED", "RUN", "DATA"]
    assert [int(line.split()[0]) for line in lines[1:]] == [
        emitted["refund"], emitted["paid-12"], emitted["paid-1"], emitted["shipped"]
    ]  # fmt: skip
    rows = {int(line.split()[0]): line for line in lines[1:]}
    assert rows[emitted["paid-1"]].split()[1:4] == ["payment.confirmed:1", "paid", "-"]
    assert rows[emitted["paid-1"]].endswith('{"amount": 10}')
    assert rows[emitted["paid-12"]].endswith("x…") and "x" * 100 not in rows[emitted["paid-12"]]
    assert emitted["run"] in rows[emitted["shipped"]]
    assert rows[emitted["refund"]].endswith("null")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--name", "payment.confirmed:1"], ["paid-1"]),
        (["--name", "payment.*"], ["refund", "paid-12", "paid-1"]),
        (["--name", "payment.confirmed:*", "--limit", "1"], ["paid-12"]),
        (["--name", "nothing"], []),
        (["--limit", "2"], ["refund", "paid-12"]),
    ],
)
def test_events_filters_by_name_and_limits(emitted, args, expected):
    data = json.loads(durable_cmd("events", "--json", *args))
    assert [row["id"] for row in data] == [emitted[name] for name in expected]


def test_events_json(emitted):
    data = {row["id"]: row for row in json.loads(durable_cmd("events", "--json"))}
    paid = data[emitted["paid-1"]]
    assert paid["name"] == "payment.confirmed:1" and paid["data"] == {"amount": 10}
    assert (paid["type"], paid["source"], paid["run_id"]) == ("paid", "", None)
    assert paid["created_at"]
    assert data[emitted["shipped"]]["run_id"] == emitted["run"]
    assert data[emitted["paid-12"]]["data"] == "x" * 500  # --json prints it all


def test_events_refuses_a_bad_limit():
    for limit in ("0", "1000001", "99999999999999999999"):
        with pytest.raises(CommandError, match=r"^--limit must be from 1 to 1000000"):
            durable_cmd("events", "--limit", limit)


# --- runs values / runs stream -------------------------------------------------------------


def test_runs_values():
    handle = wf.publishes.start(3)
    quiet = wf.add.start(1, 2)
    run_all()
    lines = durable_cmd("runs", "values", handle.id).splitlines()
    assert lines[0].split() == ["KEY", "VALUE"]
    assert lines[1].split(None, 1) == ["last", '{"index": 2}']
    key, value = lines[2].split(None, 1)  # jsonb orders the keys its own way
    assert key == "progress"
    assert json.loads(value) == {"done": 3, "total": 3, "percent": 100.0, "message": "item 2"}
    data = json.loads(durable_cmd("runs", "values", handle.id, "--json"))
    assert data == {
        "last": {"index": 2},
        "progress": {"done": 3, "total": 3, "percent": 100.0, "message": "item 2"},
    }
    assert durable_cmd("runs", "values", quiet.id).splitlines() == ["KEY  VALUE"]
    assert json.loads(durable_cmd("runs", "values", quiet.id, "--json")) == {}


def test_runs_stream():
    handle = wf.streams.start(3)
    run_all()
    assert durable_cmd("runs", "stream", handle.id, "out").splitlines() == [
        '0\t{"index": 0}', '1\t{"index": 1}', '2\t{"index": 2}'
    ]  # fmt: skip
    lines = durable_cmd("runs", "stream", handle.id, "out", "--offset", "1", "--json").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"offset": 1, "value": {"index": 1}},
        {"offset": 2, "value": {"index": 2}},
    ]
    assert durable_cmd("runs", "stream", handle.id, "out", "--offset", "9") == ""
    assert durable_cmd("runs", "stream", handle.id, "nothing") == ""


@pytest.mark.parametrize("close", [True, False])
def test_runs_stream_follow_returns_when_the_run_is_finished(close):
    handle = wf.streams.start(2, close=close)
    run_all()
    output = durable_cmd("runs", "stream", handle.id, "out", "--follow")
    assert output.splitlines() == ['0\t{"index": 0}', '1\t{"index": 1}']
    assert durable_cmd("runs", "stream", handle.id, "other", "--follow") == ""


def test_runs_stream_follow_prints_items_as_a_worker_writes_them():
    handle = wf.streams.start(3, pause=0.1)

    def work() -> None:
        try:
            run_all()
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        output = durable_cmd("runs", "stream", handle.id, "out", "--follow", "--json")
    finally:
        thread.join()
    assert [json.loads(line)["offset"] for line in output.splitlines()] == [0, 1, 2]


def test_runs_stream_follow_gives_up_after_its_timeout_and_says_where_to_go_on(worker):
    handle = wf.stream_then_wait.start(2)

    def waiting() -> bool:  # wrote two items, the stream is open, the run waits for a message
        worker.run_once()
        return Run.objects.get(pk=handle.id).status == RunStatus.WAITING

    wait_for(waiting, 10, "the run waiting")
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"after 0.2s: stream 'out' is still open.*--offset 2"):
        call_command(
            "durable", "runs", "stream", handle.id, "out", "--follow", "--timeout", "0.2",
            stdout=out, stderr=io.StringIO(),
        )  # fmt: skip
    assert out.getvalue().splitlines() == ["0\t0", "1\t1"]  # what came is printed first
    with pytest.raises(CommandError, match="--offset 2"):  # nothing new from there
        durable_cmd(
            "runs", "stream", handle.id, "out", "--follow", "--offset", "2", "--timeout", "0"
        )
    with pytest.raises(CommandError, match="--timeout only applies with --follow"):
        durable_cmd("runs", "stream", handle.id, "out", "--timeout", "5")
    for bad in ("soon", "9" * 400):
        with pytest.raises(CommandError, match="Invalid duration"):
            durable_cmd("runs", "stream", handle.id, "out", "--follow", "--timeout", bad)
    durable.send(handle.id, "done", topic="go")
    run_all()  # the run ends: following returns, whatever the timeout
    assert (
        durable_cmd("runs", "stream", handle.id, "out", "--follow", "--timeout", "5")
        == "0\t0\n1\t1\n"
    )


@pytest.mark.parametrize("action", [["values"], ["stream", "--follow"]])
def test_runs_values_and_stream_refuse_unknown_runs(action):
    sub, *flags = action
    key = ["out"] if sub == "stream" else []
    with pytest.raises(CommandError, match=r"'nope' is not a run id"):
        durable_cmd("runs", sub, "nope", *key, *flags)
    missing = str(uuid.uuid4())
    with pytest.raises(CommandError, match=f"No run has the id '{missing}'"):
        durable_cmd("runs", sub, missing, *key, *flags)


def test_runs_stream_refuses_a_negative_offset():
    handle = wf.add.start(1, 2)
    with pytest.raises(CommandError, match="--offset cannot be negative"):
        durable_cmd("runs", "stream", handle.id, "out", "--offset", "-1")


# --- workers ----------------------------------------------------------------------------


@pytest.fixture
def workers():
    now = timezone.now()
    common = {"hostname": "web-1", "concurrency": 4, "queues": ["default", "emails"]}
    return [
        WorkerProcess.objects.create(id="web-1:10:alive", pid=10, last_seen_at=now, **common),
        WorkerProcess.objects.create(
            id="web-1:11:stopped", pid=11, last_seen_at=now, stopped_at=now, **common
        ),
        WorkerProcess.objects.create(
            id="web-1:12:lost", pid=12, last_seen_at=now - timedelta(hours=1), **common
        ),
    ]


def test_workers_lists_alive_and_dead_workers(workers):
    lines = durable_cmd("workers").splitlines()
    assert lines[0].split() == [
        "ID", "QUEUES", "CONCURRENCY", "STARTED", "LAST", "SEEN", "STOPPED", "ALIVE"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"web-1:10:alive", "web-1:11:stopped", "web-1:12:lost"}
    assert rows["web-1:10:alive"].endswith("yes") and "default,emails" in rows["web-1:10:alive"]
    assert rows["web-1:11:stopped"].endswith("no") and rows["web-1:12:lost"].endswith("no")


def test_workers_json(workers):
    data = {row["id"]: row for row in json.loads(durable_cmd("workers", "--json"))}
    assert data["web-1:10:alive"]["alive"] is True
    assert data["web-1:11:stopped"]["alive"] is False and data["web-1:11:stopped"]["stopped_at"]
    assert data["web-1:12:lost"]["alive"] is False
    assert data["web-1:10:alive"]["queues"] == ["default", "emails"]
    assert data["web-1:10:alive"]["pid"] == 10 and data["web-1:10:alive"]["hostname"] == "web-1"


def test_workers_records_a_real_worker():
    Worker(burst=True).run()
    (row,) = json.loads(durable_cmd("workers", "--json"))
    assert row["pid"] == os.getpid() and row["stopped_at"] and row["alive"] is False


# --- prune ------------------------------------------------------------------------------


@pytest.fixture
def history():
    """Old and recent finished runs with steps, and runs that are not finished."""
    runs = {
        "old_completed": [wf.add.start(1, 2) for _ in range(3)],
        "old_failed": [wf.boom.start() for _ in range(2)],
        "recent": [wf.add.start(3, 4)],
    }
    run_all()
    for run in runs["old_completed"] + runs["old_failed"]:
        age(run.id, days=8)
    age(runs["recent"][0].id, hours=1)
    runs["pending"] = [wf.add.start(5, 6)]
    # Not finished, even with a finished_at set by hand: prune must still leave it alone.
    age(runs["pending"][0].id, days=30)
    return {name: [handle.id for handle in handles] for name, handles in runs.items()}


def remaining() -> set[str]:
    return {str(pk) for pk in Run.objects.values_list("pk", flat=True)}


def test_prune_deletes_old_finished_runs_and_their_steps_in_batches(history, monkeypatch):
    old = history["old_completed"] + history["old_failed"]
    assert Step.objects.filter(run_id__in=old).count() == 5
    batches: list[int] = []
    delete_runs = pruning.delete_runs
    monkeypatch.setattr(
        pruning, "delete_runs", lambda d, ids: batches.append(len(ids)) or delete_runs(d, ids)
    )
    output = durable_cmd("prune", "--older-than", "7d", "--batch-size", "2")
    assert output.strip() == "Deleted 5 finished run(s) older than 7d 00h."
    assert remaining() == set(history["recent"] + history["pending"])
    assert not Step.objects.filter(run_id__in=old).exists()
    assert Step.objects.filter(run_id__in=history["recent"]).exists()
    assert batches == [2, 2, 1]


def test_prune_only_the_statuses_asked_for(history):
    assert durable_cmd("prune", "--older-than", "1d", "--status", "failed").strip() == (
        "Deleted 2 finished run(s) older than 1d 00h."
    )
    assert remaining() == set(history["old_completed"] + history["recent"] + history["pending"])
    durable_cmd("prune", "--older-than", "600", "--status", "completed", "cancelled")
    assert remaining() == set(history["pending"])


def test_prune_with_a_pause_deletes_the_same_runs(history, monkeypatch):
    from django_durable.client import operating

    slept: list[float] = []
    monkeypatch.setattr(operating.time, "sleep", slept.append)
    output = durable_cmd("prune", "--older-than", "2h", "--batch-size", "2", "--pause", "0.5")
    assert output.strip() == "Deleted 5 finished run(s) older than 2h 00m."
    assert slept == [0.5] * 3
    assert remaining() == set(history["recent"] + history["pending"])


def test_prune_dry_run_deletes_nothing(history):
    before = remaining()
    assert durable_cmd("prune", "--older-than", "2h", "--dry-run").strip() == (
        "Would delete 5 finished run(s) older than 2h 00m."
    )
    assert durable_cmd("prune", "--older-than", "30m", "--dry-run").startswith("Would delete 6 ")
    assert remaining() == before


def test_prune_defaults_to_the_retention_setting(history, settings):
    with pytest.raises(CommandError, match=r"--older-than 30d, or set .*\['RETENTION'\]"):
        durable_cmd("prune")
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "RETENTION": 2 * 86400}
    assert durable_cmd("prune").strip() == "Deleted 5 finished run(s) older than 2d 00h."
    assert remaining() == set(history["recent"] + history["pending"])


def test_prune_says_how_many_old_events_it_kept_for_triggered_workflows():
    owed = [durable.emit_event("tests/batch", n) for n in range(2)]  # a batch of 10: pending
    done = durable.emit_event("tests/nobody", 1)  # triggers nothing
    Event.objects.update(created_at=timezone.now() - timedelta(days=3))
    assert durable_cmd("prune", "--older-than", "1d", "--dry-run").splitlines() == [
        "Would delete 0 finished run(s) older than 1d 00h.",
        "Would keep 2 event(s) as old: workflows they trigger have not started their batches yet.",
    ]
    assert json.loads(durable_cmd("prune", "--older-than", "1d", "--json")) == {
        "runs": 0,
        "events": 1,
        "events_kept": 2,
        "dry_run": False,
    }
    assert set(Event.objects.values_list("pk", flat=True)) == set(owed) != {done}
    assert durable_cmd("prune", "--older-than", "1d").splitlines()[1].startswith("Kept 2 event(s)")


@pytest.mark.parametrize("text", ["7x", "d", "-5", "1.5.2d", "ten"])
def test_prune_refuses_a_bad_duration(text):
    with pytest.raises(CommandError, match=f"Invalid duration '{text}'"):
        durable_cmd("prune", "--older-than", text)


def test_prune_refuses_unfinished_statuses_and_bad_batches():
    choices = r"\(choose from 'cancelled', 'completed', 'failed'\)"
    with pytest.raises(CommandError, match=f"invalid choice: 'running' {choices}"):
        durable_cmd("prune", "--older-than", "1d", "--status", "running")
    for size in ("0", "100001", "99999999999999999999"):
        with pytest.raises(CommandError, match=r"^--batch-size must be from 1 to 100000"):
            durable_cmd("prune", "--older-than", "1d", "--batch-size", size)
    with pytest.raises(CommandError, match=r"^--older-than must be under 100 years"):
        durable_cmd("prune", "--older-than", "99999999d")
    for pause in ("-1", "60", "nan"):
        with pytest.raises(CommandError, match=r"^--pause (cannot be negative|must be)"):
            durable_cmd("prune", "--older-than", "1d", "--pause", pause)
    with pytest.raises(CommandError, match=r"argument --pause: invalid float value: 'soon'"):
        durable_cmd("prune", "--older-than", "1d", "--pause", "soon")
    with pytest.raises(CommandError, match=r"Invalid duration '9{400}': too long"):
        durable_cmd("prune", "--older-than", "9" * 400)


def test_parse_duration():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration(" 7D ") == timedelta(days=7)
    assert parse_duration("2.5") == timedelta(seconds=2.5)
    assert parse_duration("0") == timedelta(0)


def test_prune_from_python(history):
    with pytest.raises(ValueError, match=r"among cancelled, completed, failed, not 'waiting'"):
        durable.prune(older_than=timedelta(days=1), statuses=["failed", "waiting"])
    with pytest.raises(ValueError, match=r"^older_than= cannot be negative\.$"):
        durable.prune(older_than=timedelta(days=-1))
    with pytest.raises(ValueError, match=r"^older_than= must be a number of seconds, not NaN\.$"):
        durable.prune(older_than=float("nan"))
    assert durable.prune(older_than=timedelta(days=1), statuses="failed", dry_run=True).runs == 2
    assert durable.prune(older_than=timedelta(days=1), batch_size=1) == durable.PruneResult(
        runs=5, events=0, events_kept=0
    )
    assert durable.prune(older_than=timedelta(days=1)).runs == 0
    assert durable.prune(older_than=60).runs == 1


@pytest.mark.parametrize("value", [0, -1, "7d", True])
def test_the_retention_setting_must_be_positive_seconds(settings, value):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "RETENTION": value}
    with pytest.raises(ImproperlyConfigured, match=r"\['RETENTION'\] must be a number of seconds"):
        get_settings()


# --- runs cancel / retry / children ---------------------------------------------------------


def test_runs_cancel_a_sleeping_run_which_cleans_up_and_ends_cancelled(worker):
    from tests.testapp.models import Execution

    handle = wf.cleanup.start()
    worker.run_once()
    output = durable_cmd("runs", "cancel", handle.id, "--reason", "customer left")
    assert output.strip() == (
        f"Asked run {handle.id} to stop: it raises Cancelled at its next durable operation, "
        "runs its cleanup and ends cancelled."
    )
    shown = durable_cmd("runs", "show", handle.id)
    assert "Cancellation:    requested " in shown and shown.count(": customer left") == 1
    run_all()
    assert handle.refresh().status == RunStatus.CANCELLED
    assert handle.error["message"] == "customer left"
    assert Execution.objects.filter(run_id=handle.id, label="cleanup").count() == 1
    details = json.loads(durable_cmd("runs", "show", handle.id, "--json"))
    assert details["cancel_reason"] == "customer left" and details["cancel_requested_at"]


def test_runs_cancel_a_run_that_never_started():
    handle = wf.add.start(1, 2)
    assert durable_cmd("runs", "cancel", handle.id).strip() == f"Cancelled run {handle.id}."
    assert handle.refresh().status == RunStatus.CANCELLED
    assert handle.model.cancel_reason == "cancelled"


def test_runs_cancel_a_finished_run_is_an_error(finished):
    added, _ = finished
    with pytest.raises(CommandError, match=rf"Run {added.id} has already finished \(completed\)"):
        durable_cmd("runs", "cancel", added.id)
    assert added.refresh().status == RunStatus.COMPLETED


def test_runs_retry_a_failed_run_which_then_completes():
    handle = wf.retry_me.start()
    run_all()
    output = durable_cmd("runs", "retry", handle.id)
    assert output.strip() == f"Retrying run {handle.id}: attempt 2, pending."
    run_all()
    assert handle.result(timeout=1) == 7


def test_runs_retry_a_run_that_is_not_failed_or_cancelled_is_an_error(finished):
    added, _ = finished
    with pytest.raises(CommandError, match="is completed: only failed or cancelled runs can be"):
        durable_cmd("runs", "retry", added.id)
    assert added.refresh().model.attempt == 1


@pytest.mark.parametrize("action", ["cancel", "retry", "children"])
def test_runs_cancel_retry_children_refuse_unknown_runs(action):
    with pytest.raises(CommandError, match=r"'nope' is not a run id"):
        durable_cmd("runs", action, "nope")
    missing = str(uuid.uuid4())
    with pytest.raises(CommandError, match=f"No run has the id '{missing}'"):
        durable_cmd("runs", action, missing)


def test_runs_children_lists_them_oldest_first(worker):
    parent = wf.parent_fanout.start(3)
    worker.run_once()
    children = [child.id for child in parent.children()]
    lines = durable_cmd("runs", "children", parent.id).splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATUS", "POSITION", "CREATED", "FINISHED"]
    assert [line.split()[:4] for line in lines[1:]] == [
        [child_id, "tests.child_double", "pending", str(position)]
        for position, child_id in enumerate(children)
    ]
    data = json.loads(durable_cmd("runs", "children", parent.id, "--json"))
    assert [row["id"] for row in data] == children
    assert data[0]["parent_close"] == "cancel" and data[0]["finished_at"] is None
    assert durable_cmd("runs", "children", children[0]).splitlines() == [
        "ID  WORKFLOW  STATUS  POSITION  CREATED  FINISHED"
    ]
    assert json.loads(durable_cmd("runs", "children", children[0], "--json")) == []


def test_runs_show_names_the_parent_and_counts_the_children(worker):
    parent = wf.parent_fanout.start(2)
    worker.run_once()
    child = parent.children()[0]
    shown = durable_cmd("runs", "show", parent.id)
    assert f"Children:        2 (durable runs children {parent.id})" in shown
    assert "Parent:" not in shown and "Cancellation:" not in shown
    shown = durable_cmd("runs", "show", child.id)
    assert f"Parent:          {parent.id} (depth 1; if the parent finishes first: cancel)" in shown
    assert "Children:" not in shown
    details = json.loads(durable_cmd("runs", "show", child.id, "--json"))
    assert (details["parent"], details["depth"], details["parent_close"]) == (
        parent.id,
        1,
        "cancel",
    )
    assert details["children_count"] == 0
    assert json.loads(durable_cmd("runs", "show", parent.id, "--json"))["children_count"] == 2


# --- the command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "show", "nope"], "CommandError: 'nope' is not a run id"),
        (["prune", "--older-than", "soon"], "CommandError: Invalid duration 'soon'"),
        (["emit", "tick", "{bad"], "CommandError: DATA_JSON is not valid JSON"),
        (["send", "nope", "1"], "CommandError: 'nope' is not a run id"),
        (["runs", "cancel", "nope"], "CommandError: 'nope' is not a run id"),
        (["runs", "retry", "nope"], "CommandError: 'nope' is not a run id"),
    ],
)
def test_bad_input_exits_1_with_a_message_and_no_traceback(args, message):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "django", "durable", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_prune_result_is_the_number_of_runs_and_says_more():
    result = durable.PruneResult(runs=3, events=2, events_kept=1)
    assert result == 3 and isinstance(result, int)
    assert (result.runs, result.events, result.events_kept) == (3, 2, 1)
    assert result != durable.PruneResult(runs=3, events=2, events_kept=0)
    assert repr(result) == "PruneResult(runs=3, events=2, events_kept=1)"
