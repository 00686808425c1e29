"""What the commands print of user data cannot drive the terminal or break a table, and
``--json`` gives it back exactly."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.management import CommandError, call_command

import django_durable as durable
from django_durable.declarations.registry import unregister
from django_durable.testing import run_all
from tests.management.calls import cancel_requested, durable_cmd, durable_process, work_once

pytestmark = pytest.mark.django_db(transaction=True)

# Colours, a bell, a carriage return, a C1 CSI, a right-to-left override, a line separator.
NASTY = "red\x1b[31mALERT\x1b[0m\nnext\tline\r\x07\x9b2J\u202eevil\u2028end"
NAME = "cli.nasty\x1b[2J\nname"
# What may reach a terminal: no control character but the newline that ends a line.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
ESCAPED = r"red\u001b[31mALERT\u001b[0m\nnext\tline\r\u0007\u009b2J\u202eevil\u2028end"


def safe(text: str) -> str:
    assert not UNSAFE.search(text), repr(text)
    return text


@pytest.fixture
def nasty():
    """A run of a workflow with a nasty name, that records nasty things and fails with them."""

    @durable.workflow(name=NAME)
    def says(ctx: durable.Context, text: str) -> None:
        ctx.set_value("said", text)
        ctx.set_value("long", "x" * 500)
        ctx.write_stream("out", text)
        ctx.step(text, lambda: text)
        raise ValueError(text)

    handle = says.using(idempotency_key=NASTY).start(NASTY)
    run_all()
    yield handle
    unregister(NAME)


def test_tables_escape_values_and_keep_one_line_per_row(nasty):
    for args, rows in [
        (["runs", "list"], 1),
        (["runs", "steps", nasty.id], 4),
        (["runs", "values", nasty.id], 2),
        (["workflows"], None),
    ]:
        lines = safe(durable_cmd(*args)).splitlines()
        if rows is not None:
            assert len(lines) == 1 + rows, args
        assert any(r"cli.nasty\u001b[2J\nname" in line or ESCAPED[:20] in line for line in lines)
    steps = durable_cmd("runs", "steps", nasty.id).splitlines()[4]
    assert steps.startswith(f"3  step    {ESCAPED}  completed  1 ")
    result = steps.rsplit("  ", 1)[1]  # a preview of the result, cut
    assert result.endswith("…") and f'"{ESCAPED}"'.startswith(result[:-1])
    lines = durable_cmd("runs", "values", nasty.id).splitlines()
    values = dict(line.split(None, 1) for line in lines)
    assert values["said"] == f'"{ESCAPED}"'  # JSON's escapes, and the same ones for the rest
    assert values["long"] == '"' + "x" * 78 + "…"  # a long value is cut: --json has it all


def test_show_escapes_every_fact_and_the_summary(nasty):
    output = safe(durable_cmd("runs", "show", nasty.id))
    lines = output.splitlines()
    assert lines[0] == f"Failed: ValueError: {ESCAPED}"
    assert r"Workflow:        cli.nasty\u001b[2J\nname" in lines
    assert f"Idempotency key: {ESCAPED}" in lines
    assert f"Error:           ValueError: {ESCAPED}" in lines
    assert any(line.startswith("Traceback:") for line in lines)


def test_show_and_cancel_wait_escape_a_cancel_reason(worker):
    handle = durable.start("tests.cleanup")
    worker.run_once()
    durable_cmd("runs", "cancel", handle.id, "--reason", NASTY[:40])
    reason = r"red\u001b[31mALERT\u001b[0m\nnext\tline\r\u0007\u009b2J\u202eevil\u2028en"
    shown = safe(durable_cmd("runs", "show", handle.id)).splitlines()
    assert any(line.startswith("Cancellation:    requested ") for line in shown)
    assert any(line.endswith(f": {reason}") for line in shown if line.startswith("Cancellation"))
    again = durable.start("tests.cleanup")
    worker.run_once()
    thread = work_once(cancel_requested(again.id))
    try:
        output = durable_cmd("runs", "cancel", again.id, "--reason", NASTY, "--wait", "20")
    finally:
        thread.join()
    ended = safe(output).splitlines()[1]
    assert ended.startswith(f"Run {again.id} ended: Cancelled ") and ended.endswith(ESCAPED)
    lines = safe(durable_cmd("runs", "show", handle.id)).splitlines()
    assert lines[0].endswith(f": {reason}")


def test_events_and_emit_escape_the_name_and_the_data():
    output = safe(durable_cmd("emit", NASTY, json.dumps(NASTY)))
    assert output.startswith("Emitted event ") and f"({ESCAPED}): woke 0 runs." in output
    lines = safe(durable_cmd("events")).splitlines()
    assert len(lines) == 2 and ESCAPED[:30] in lines[1]


def test_stream_lines_stay_json_and_safe(nasty):
    [line] = durable_cmd("runs", "stream", nasty.id, "out").splitlines()
    offset, text = line.split("\t")  # OFFSET<TAB>JSON: the only tab
    assert offset == "0" and safe(text) == json.dumps(NASTY, ensure_ascii=False).translate(
        {0x9B: r"\u009b", 0x202E: r"\u202e", 0x2028: r"\u2028"}
    )
    assert json.loads(text) == NASTY  # the escapes are JSON's: it round-trips


def test_json_gives_every_value_back_exactly(nasty):
    assert json.loads(safe(durable_cmd("runs", "show", nasty.id, "--json")))["input"] == {
        "args": [NASTY], "kwargs": {}
    }  # fmt: skip
    shown = json.loads(durable_cmd("runs", "show", nasty.id, "--json"))
    assert shown["idempotency_key"] == NASTY and shown["error"]["message"] == NASTY
    assert shown["workflow_name"] == NAME and shown["last_step"]["name"] == NASTY
    assert NASTY in shown["summary"]["sentence"]
    [run] = json.loads(safe(durable_cmd("runs", "list", "--json")))
    assert run["workflow_name"] == NAME
    steps = json.loads(safe(durable_cmd("runs", "steps", nasty.id, "--json")))
    assert steps[3]["name"] == NASTY and steps[3]["result"] == NASTY
    values = json.loads(safe(durable_cmd("runs", "values", nasty.id, "--json")))
    assert values == {"said": NASTY, "long": "x" * 500}
    [item] = safe(durable_cmd("runs", "stream", nasty.id, "out", "--json")).splitlines()
    assert json.loads(item)["value"] == NASTY
    workflows = json.loads(safe(durable_cmd("workflows", "--json")))
    assert NAME in [item["name"] for item in workflows]
    emitted = json.loads(safe(durable_cmd("emit", NASTY, "--json")))
    assert emitted["name"] == NASTY
    [event] = json.loads(safe(durable_cmd("events", "--json")))
    assert event["name"] == NASTY


def test_errors_and_tracebacks_are_escaped(nasty):
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "durable", "start", NAME, "--idempotency-key", NASTY, "--wait", "5",
            stdout=io.StringIO(), stderr=err,
        )  # fmt: skip
    message = safe(str(raised.value))
    assert message.endswith(f"failed: ValueError: {ESCAPED}")
    traceback = safe(err.getvalue()).splitlines()  # a traceback keeps its lines
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-2:] == [
        r"ValueError: red\u001b[31mALERT\u001b[0m",
        r"next\tline\r\u0007\u009b2J\u202eevil\u2028end",
    ]


def test_a_real_process_prints_no_escape_sequence():
    done = durable_process("emit", NASTY, "--type", NASTY)
    assert done.returncode == 0, done.stderr
    safe(done.stdout)
    safe(durable_process("events").stdout)
