"""Part 8 of docs/tutorial.md, "Talking to your run", done as the page says.

The workflow is the page's own code (its part 3 and part 8 blocks), loaded as the module
``myapp.workflows`` that the reader writes. Each way of talking to the run is then run
from the page: the shell session line by line, the ``manage.py durable`` commands with
``call_command``, the curl requests with Django's test client (HTTP Basic, as ``curl -u``
sends), and the admin's buttons. What the page shows as output must be what comes out,
once run ids, times, durations and database ids are left aside.

The tests execute runs in their own thread between two lines of the page
(``django_durable.testing.run_ready``): the worker in the background of the page.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
import sys
import types
from collections.abc import Iterator
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

import django_durable as durable
from django_durable.declarations import registry
from django_durable.testing import run_ready
from django_durable.worker import unknown
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = (ROOT / "docs" / "tutorial.md").read_text()
PART = PAGE.split("## 8. Talking to your run", 1)[1].split("\n## ", 1)[0]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def section(title: str) -> str:
    """Return the text of part 8's subsection whose title starts with ``title``."""
    return PART.split(f"### {title}", 1)[1].split("\n", 1)[1].split("\n### ", 1)[0]


def blocks(text: str, language: str) -> list[str]:
    """Return the fenced code blocks of ``language`` in ``text``."""
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def normalized(text: str) -> str:
    """Return ``text`` without what changes from one run to the next."""
    text = UUID.sub("<uuid>", text)
    text = re.sub(r"\b\d\d:\d\d(:\d\d(\.\d+)?)?( \(\d+ \w+ ago\)| \(now\))?", "<time>", text)
    text = re.sub(r"\b(\d+m )?\d+(\.\d+)?(ms|s)\b", "<duration>", text)
    text = re.sub(r"\b(event|Event|Message|message|id\"?:) ?\d+\b", r"\1 <id>", text)
    return re.sub(r"^\d+$", "<id>", text, flags=re.MULTILINE)


def assert_shows(expected: str, actual: str) -> None:
    """Assert that the lines of ``expected`` but ``...`` come out in ``actual``, in order."""
    wanted = [line for line in normalized(expected).splitlines() if line.strip() not in ("", "...")]
    found = [line for line in normalized(actual).splitlines() if line.strip()]
    position = 0
    for line in wanted:
        while position < len(found) and found[position].rstrip() != line.rstrip():
            position += 1
        assert position < len(found), f"The page shows {line!r}; it came out as:\n{actual}"
        position += 1


def commands(block: str) -> Iterator[tuple[list[str], str]]:
    """Yield each ``$`` command of a console block (continued lines joined) and its output."""
    command: list[str] = []
    output: list[str] = []
    lines = iter(block.splitlines())
    for line in lines:
        if line.startswith("$ "):
            if command:
                yield command, "\n".join(output)
            text = line[2:]
            while text.endswith("\\"):
                text = text[:-1] + next(lines).strip()
            command, output = shlex.split(text), []
        else:
            output.append(line)
    if command:
        yield command, "\n".join(output)


@pytest.fixture
def myapp() -> Iterator[types.ModuleType]:
    """The reader's ``myapp/workflows.py``: the page's part 3 code, then its part 8 code."""
    part3 = blocks(PAGE.split("## 3. Write a workflow", 1)[1], "python")[0]
    part8 = blocks(section("A workflow that waits"), "python")[0]
    package = types.ModuleType("myapp")
    package.__path__ = []
    module = types.ModuleType("myapp.workflows")
    package.workflows = module  # type: ignore[attr-defined]
    sys.modules.update({"myapp": package, "myapp.workflows": module})
    exec(compile(f"{part3}\n\n{part8}", "docs/tutorial.md", "exec"), module.__dict__)
    try:
        yield module
    finally:
        for name in ("orders.fulfil", "orders.review"):
            registry.unregister(name)
        sys.modules.pop("myapp.workflows", None)
        sys.modules.pop("myapp", None)


def test_the_workflow_is_the_one_the_page_describes(myapp):
    workflow = registry.get_workflow("orders.review")
    assert workflow is myapp.review_order
    assert workflow.http_start  # "http_start=True lets the HTTP API start this workflow"


def test_a_worker_without_the_new_code_says_what_the_page_quotes(myapp, caplog):
    """The warning of a worker started before ``orders.review`` was added."""
    quoted = re.search(
        r"log a warning: `(Worker .*?)`\n", section("Restart the worker after"), re.S
    )
    assert quoted, "the page quotes the warning"
    run = myapp.review_order.start("A-2000")
    registry.unregister("orders.review")  # the worker of part 6 does not know it
    unknown._warned.discard("orders.review")  # it warns once per process and name
    with caplog.at_level("WARNING", logger="django_durable"):
        run_ready()
    assert run.refresh().status == durable.RunStatus.PENDING  # left for a worker that knows
    logged = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(logged) == 1, caplog.text
    worker_id = re.compile(r"Worker \S+:\d+:[0-9a-f]+")
    assert worker_id.sub("Worker <id>", " ".join(quoted[1].split())) == worker_id.sub(
        "Worker <id>", logged[0]
    )


def test_from_the_django_shell(myapp, capsys):
    """The page's shell session, line by line, with the worker between the lines."""
    session = blocks(section("From the Django shell"), "pycon")[0]
    namespace: dict[str, Any] = {}
    lines = session.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith(">>> "):
            continue
        run_ready()
        source = line[4:]
        shown = lines[index + 1] if index + 1 < len(lines) else ""
        try:
            code = compile(source, "docs/tutorial.md", "eval")
        except SyntaxError:
            exec(compile(source, "docs/tutorial.md", "exec"), namespace)
            continue
        value = eval(code, namespace)
        assert not shown.startswith(">>> "), f"the page shows nothing for {source!r}"
        assert normalized(repr(value)) == normalized(shown), source
    run = namespace["run"]
    assert run.refresh().status == durable.RunStatus.COMPLETED
    assert run.result() == {
        "order": "A-2001",
        "amount": "19.90",
        "approved": True,
        "reviewer": "ada",
    }
    # What the worker printed: "is paid" twice, as the page explains.
    printed = blocks(section("From the Django shell"), "console")[0]
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[worker")]
    pid = re.compile(r"pid \d+")
    assert [pid.sub("pid <pid>", line) for line in said] == [
        pid.sub("pid <pid>", line) for line in printed.splitlines()
    ]


def test_from_the_command_line(myapp, capsys):
    """The page's ``manage.py durable`` commands, in order, with their output."""
    documented_id = None
    run_id = None
    for command, shown in commands(blocks(section("From the command line"), "console")[0]):
        assert command[:2] == ["python", "manage.py"], command
        run_ready()
        args = [run_id if arg == documented_id else arg for arg in command[2:]]
        out = StringIO()
        call_command(*args, stdout=out)
        if args[1] == "start":
            documented_id, run_id = shown.strip(), out.getvalue().strip()
            assert UUID.fullmatch(documented_id) and UUID.fullmatch(run_id)
            continue
        assert_shows(shown, out.getvalue())
    assert durable.get_run(run_id).result() == {
        "order": "A-2002",
        "amount": "42.00",
        "approved": False,
        "reviewer": "bob",
    }
    said = capsys.readouterr().out
    assert said.count("A-2002 is paid") == 1  # "once this time"
    assert "A-2002 was reviewed: {'approved': False, 'reviewer': 'bob'}" in said


def curl(client, command: list[str], replace: dict[str, str]) -> tuple[int, str]:
    """Make the request of a ``curl`` command; return its status and body as curl prints it."""
    assert command[0] == "curl", command
    url, body, user, pretty = None, None, None, False
    words = iter(command[1:])
    for word in words:
        if word == "-u":
            user = next(words)
        elif word == "-d":
            body = next(words)
        elif word == "-H":
            assert next(words) == "Content-Type: application/json"
        elif word == "|":
            assert list(words) == ["python", "-m", "json.tool"]
            pretty = True
        elif word != "-s":
            url = word
    assert url is not None and user is not None, command
    path = urlsplit(url).path
    for documented, actual in replace.items():
        path = path.replace(documented, actual)
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(user.encode()).decode()}
    if body is None:
        response = client.get(path, **auth)
    else:
        response = client.post(path, body, content_type="application/json", **auth)
    text = response.content.decode()
    return response.status_code, json.dumps(json.loads(text), indent=4) if pretty else text


def test_over_http(myapp, client):
    """The page's curl requests, as the superuser of part 7 with HTTP Basic."""
    text = section("Over HTTP")
    user = re.search(r"here `(\w+)`, with\s+the password `(\w+)`", text)
    assert user, "the page names the user and password that curl -u sends"
    User.objects.create_superuser(user[1], password=user[2])
    replace: dict[str, str] = {}
    statuses = []
    for block in [block for block in blocks(text, "console") if block.startswith("$ curl")]:
        for command, shown in commands(block):
            run_ready()
            status, body = curl(client, command, replace)
            statuses.append(status)
            if not replace:  # the start: the answer names the run
                documented = UUID.search(shown)
                assert documented, shown
                replace[documented[0]] = json.loads(body)["id"]
            if shown.endswith(",...}"):  # a compact answer, cut short
                assert normalized(body).startswith(normalized(shown[: -len(",...}")])), body
            elif shown.startswith("{") and "\n" not in shown:
                assert normalized(body) == normalized(shown)
            else:
                assert_shows(shown, body)
    # "The answer (201)"; events and messages: "Both answer 202".
    assert statuses == [201, 200, 202, 202, 200]
    (run_id,) = replace.values()
    assert durable.get_run(run_id).result() == {
        "order": "A-2003",
        "amount": "7.50",
        "approved": True,
        "reviewer": "carol",
    }


def page_text(client, run_id: str) -> str:
    """Return the words of a run's admin page, without its tags."""
    response = client.get(reverse("admin:django_durable_run_change", args=[run_id]))
    assert response.status_code == 200
    return page_words(response)


def page_words(response) -> str:
    words = re.sub(r"<script.*?</script>|<[^>]+>", " ", response.content.decode(), flags=re.S)
    return " ".join(html.unescape(words).split())


def buttons(client, run_id: str) -> list[str]:
    """Return the titles of the buttons a run's admin page offers, in order."""
    response = client.get(reverse("admin:django_durable_run_change", args=[run_id]))
    return re.findall(r"<h3>([^<]+)</h3>", response.content.decode())


def quoted(pattern: str, text: str) -> str:
    """Return what the page quotes in ``pattern``'s group, on one line."""
    found = re.search(pattern, text, flags=re.DOTALL)
    assert found, f"the page has no {pattern!r}"
    return " ".join(found[1].split())


def test_in_the_admin(myapp, client):
    """The page's admin walk-through: start, emit and send with the buttons, see the result."""
    text = section("In the admin")
    [(command, shown)] = commands(blocks(text, "console")[0])
    out = StringIO()
    call_command(*command[2:], stdout=out)
    run_id = out.getvalue().strip()
    assert UUID.fullmatch(run_id) and UUID.fullmatch(shown.strip())  # "prints its id"
    run_ready()
    client.force_login(User.objects.create_superuser("admin", password="secret"))
    listed = page_words(client.get(reverse("admin:django_durable_run_changelist")))
    waiting = quoted(r"the new run is `(Waiting for event.*?)`", text)
    assert normalized(waiting) in normalized(listed)
    page = page_text(client, run_id)
    assert normalized(waiting) in normalized(page)
    assert buttons(client, run_id) == ["Emit an event", "Send a message", "Cancel"]
    assert "0 event payment.confirmed:A-2004 waiting" in page  # the Steps table's one row
    assert "Workers that know its workflow" in page
    press = "admin:django_durable_run_press"
    # Emit an event: the name is filled in; the page gives the data.
    filled = client.get(reverse("admin:django_durable_run_change", args=[run_id]))
    assert 'name="name" value="payment.confirmed:A-2004"' in filled.content.decode()
    data = quoted(r"type `(\{.*?\})` as the data", text)
    answer = client.post(
        reverse(press, args=[run_id, "emit"]),
        {"name": "payment.confirmed:A-2004", "data": data},
        follow=True,
    )
    said = " ".join(str(note) for note in answer.context["messages"])
    assert normalized(said) == normalized(quoted(r"The\s+page says `(Event .*?)`", text))
    run_ready()
    page = page_text(client, run_id)
    assert normalized(quoted(r"the sentence reads\s+`(.*?) since", text)) in page
    refilled = client.get(reverse("admin:django_durable_run_change", args=[run_id]))
    assert 'name="topic" value="review"' in refilled.content.decode()
    message = quoted(r"Type `(\{.*?\})` as the message", text)
    answer = client.post(
        reverse(press, args=[run_id, "send"]), {"topic": "review", "message": message}, follow=True
    )
    said = " ".join(str(note) for note in answer.context["messages"])
    assert normalized(said) == normalized(quoted(r"\(`(Message .*?)`\)", text))
    run_ready()
    page = page_text(client, run_id)
    finished = quoted(r"shows:\s+- `(Completed in .*?)`", text)
    assert normalized(finished) in normalized(page)
    assert buttons(client, run_id) == ["Fork from a step"]  # "one button left"
    result = json.loads(quoted(r"the \*\*Result\*\*, `(\{.*?\})`", text))
    assert durable.get_run(run_id).result() == result
    assert "Messages" in page and message in page
    history = page_words(client.get(reverse("admin:django_durable_run_history", args=[run_id])))
    assert "Emitted an event" in history and "Sent a message" in history
