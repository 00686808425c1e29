"""JSON arguments from a file or standard input: ``--args-file``, ``--kwargs-file``,
``--message-file``, ``--data-file`` (``-`` is standard input)."""

from __future__ import annotations

import io
import json
import sys

import pytest
from django.core.management import CommandError

from django_durable.models import Event, Message, Run
from tests.management.calls import durable_cmd, durable_process
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stdin(monkeypatch):
    """Give the command ``text`` on standard input, as bytes like a real one."""

    def give(text: str) -> None:
        stream = io.TextIOWrapper(io.BytesIO(text.encode()), encoding="utf-8")
        monkeypatch.setattr(sys, "stdin", stream)

    return give


def test_start_reads_its_arguments_from_files(tmp_path):
    (tmp_path / "args.json").write_text("[2]\n")
    (tmp_path / "kwargs.json").write_text('{"b": 3}')
    run_id = durable_cmd(
        "start", "tests.add",
        "--args-file", str(tmp_path / "args.json"),
        "--kwargs-file", str(tmp_path / "kwargs.json"),
    ).strip()  # fmt: skip
    assert Run.objects.get(pk=run_id).get_input() == ([2], {"b": 3})


def test_start_reads_one_of_them_from_standard_input(stdin, tmp_path):
    stdin('{"b": "café"}')
    (tmp_path / "args.json").write_text("[1]")
    run_id = durable_cmd(
        "start", "tests.add", "--kwargs-file", "-", "--args-file", str(tmp_path / "args.json")
    ).strip()
    assert Run.objects.get(pk=run_id).get_input() == ([1], {"b": "café"})


def test_send_and_emit_read_their_json_from_standard_input(stdin):
    handle = wf.add.start(1, 2)
    stdin('{"approved": true}')
    message_id = int(durable_cmd("send", handle.id, "--message-file", "-", "--topic", "t"))
    assert Message.objects.get(pk=message_id).get_data() == {"approved": True}
    stdin("[1, 2, 3]")
    event_id = json.loads(durable_cmd("emit", "tick", "--data-file", "-", "--json"))["id"]
    assert Event.objects.get(pk=event_id).get_data() == [1, 2, 3]


def test_emit_reads_a_file_in_utf8_with_a_bom(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes('\ufeff{"note": "café"}'.encode())
    event_id = json.loads(durable_cmd("emit", "tick", "--data-file", str(path), "--json"))["id"]
    assert Event.objects.get(pk=event_id).get_data() == {"note": "café"}


def test_a_real_process_reads_standard_input():
    handle = wf.add.start(1, 2)
    done = durable_process("send", handle.id, "--message-file", "-", stdin='"from a pipe"')
    assert done.returncode == 0, done.stderr
    assert Message.objects.get(pk=int(done.stdout)).get_data() == "from a pipe"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["start", "tests.add", "--args", "[1]", "--args-file", "x.json"],
            r"argument --args-file: not allowed with argument --args",
        ),
        (
            ["start", "tests.add", "--kwargs", "{}", "--kwargs-file", "-"],
            r"argument --kwargs-file: not allowed with argument --kwargs",
        ),
        (
            ["send", "RUN", "1", "--message-file", "-"],
            r"argument --message-file: not allowed with argument MESSAGE_JSON",
        ),
        (["send", "RUN"], r"one of the arguments MESSAGE_JSON --message-file is required"),
        (
            ["emit", "tick", "1", "--data-file", "-"],
            r"argument --data-file: not allowed with argument DATA_JSON",
        ),
        (
            ["start", "tests.add", "--args-file", "-", "--kwargs-file", "-"],
            r"^Only one option can read standard input, not --args-file and --kwargs-file\.$",
        ),
    ],
)
def test_an_inline_option_and_its_file_twin_exclude_each_other(args, message):
    handle = wf.add.start(1, 2)
    args = [handle.id if arg == "RUN" else arg for arg in args]
    with pytest.raises(CommandError, match=message):
        durable_cmd(*args)
    assert Run.objects.count() == 1 and not Message.objects.exists()
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("content", "option", "message"),
    [
        (None, "--args-file", r"^--args-file '{path}': cannot read the file \(No such file"),
        ("[1,", "--args-file", r"^--args-file '{path}' is not valid JSON \(Expecting .*\)\.$"),
        ('{"a": 1}', "--args-file", r"^--args-file '{path}' must be an array in JSON, not an"),
        ("[1]", "--kwargs-file", r"^--kwargs-file '{path}' must be an object in JSON, not an "),
        (b"\xff\xfe\xfa", "--kwargs-file", r"^--kwargs-file '{path}' is not (text in UTF-8|valid)"),
        ("", "--message-file", r"^--message-file '{path}' is not valid JSON \(Expecting value"),
        ("{nope", "--data-file", r"^--data-file '{path}' is not valid JSON \(Expecting property"),
    ],
)
def test_an_unreadable_or_invalid_file_is_an_error_naming_the_option(
    tmp_path, content, option, message
):
    path = tmp_path / "input.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    handle = wf.add.start(1, 2)
    command = {
        "--args-file": ["start", "tests.add"],
        "--kwargs-file": ["start", "tests.add"],
        "--message-file": ["send", handle.id],
        "--data-file": ["emit", "tick"],
    }[option]
    with pytest.raises(CommandError, match=message.format(path=str(path))):
        durable_cmd(*command, option, str(path))
    assert Run.objects.count() == 1 and not Message.objects.exists()
    assert not Event.objects.exists()


def test_a_directory_is_an_unreadable_file(tmp_path):
    with pytest.raises(CommandError, match=r"^--args-file '.*': cannot read the file \(Is a dir"):
        durable_cmd("start", "tests.add", "--args-file", str(tmp_path))


def test_invalid_json_from_standard_input_names_it(stdin):
    stdin("not json")
    with pytest.raises(
        CommandError, match=r"^--data-file - \(standard input\) is not valid JSON \(Expecting"
    ):
        durable_cmd("emit", "tick", "--data-file", "-")
    stdin('"text"')
    with pytest.raises(
        CommandError, match=r"^--args-file - \(standard input\) must be an array in JSON, not a s"
    ):
        durable_cmd("start", "tests.add", "--args-file", "-")
    assert not Event.objects.exists() and not Run.objects.exists()
