"""``durable callbacks complete`` and ``durable callbacks fail``."""

from __future__ import annotations

import json

import pytest
from django.core.management.base import CommandError

import django_durable as durable
from django_durable.models import Callback
from django_durable.testing import run_all, run_ready
from tests.management.calls import durable_cmd, durable_process
from tests.testapp import waits_workflows as ww

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def waiting() -> tuple[durable.RunHandle, str]:
    handle = ww.callback.start()
    run_ready()
    return handle, durable.get_value(handle.id, "callback")["id"]


def test_complete_settles_it_once(waiting):
    handle, callback_id = waiting
    output = durable_cmd("callbacks", "complete", callback_id, "--value", '{"ok": 1}')
    assert output == f"Completed callback {callback_id}.\n"
    with pytest.raises(CommandError, match="was completed before"):
        durable_cmd("callbacks", "complete", callback_id, "--value", "2")
    run_all()
    assert handle.result(timeout=1)["value"] == {"ok": 1}


def test_fail_with_details_as_json(waiting):
    handle, callback_id = waiting
    output = durable_cmd(
        "callbacks", "fail", callback_id, "--error", "no stock", "--details", "[1]", "--json"
    )
    assert json.loads(output) == {"id": callback_id, "status": "failed"}
    run_all()
    assert handle.result(timeout=1)["details"] == [1]


def test_complete_reads_the_value_from_a_file(waiting, tmp_path):
    _handle, callback_id = waiting
    path = tmp_path / "value.json"
    path.write_text('{"from": "file"}')
    durable_cmd("callbacks", "complete", callback_id, "--value-file", str(path))
    assert Callback.objects.get(pk=callback_id).get_value() == {"from": "file"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("complete", "not-an-id"), "No callback has the id 'not-an-id'"),
        (("complete", "0190a000-0000-7000-8000-000000000000"), "No callback has the id"),
        (("complete", "ID", "--value", "{bad"), "--value is not valid JSON"),
        (("complete", "ID", "--value", '"\\u0000"'), "NUL"),
    ],
)
def test_bad_input_is_a_clear_error(waiting, args, message):
    _, callback_id = waiting
    args = tuple(callback_id if arg == "ID" else arg for arg in args)
    with pytest.raises(CommandError, match=message):
        durable_cmd("callbacks", *args)
    assert Callback.objects.get(pk=callback_id).status == "pending"


def test_as_a_process_a_refusal_exits_1(waiting):
    _, callback_id = waiting
    assert durable_process("callbacks", "complete", callback_id).returncode == 0
    again = durable_process("callbacks", "complete", callback_id)
    assert again.returncode == 1
    assert "was completed before" in again.stderr
