"""DBOS's communication examples (seed 002), run end to end and measured.

The seed's ``server.py`` offers HTTP endpoints around DBOS's calls; here the HTTP API that
django-durable mounts at ``/durable/`` plays that part, called in-process with Django's
test client (as a browser or ``curl`` would call it), beside the Python API (as the seed's
``DBOSClient`` does):

- ``dbos-values``: a run publishes progress (0-100 %), status and result; a client follows
  the progress by long polling, reads one value, waits for the result, and reads them all.
- ``dbos-messages``: three runs wait for an approval; one is approved over HTTP, one is
  rejected from Python, one hears nothing and times out; a late approval is refused (409).
- ``dbos-streams``: a run streams its progress; a client reads it live as Server-Sent
  Events, and as JSON pages, and resumes after a dropped connection.

Each demo names its runs with a fresh tag (the seed's workflow ids, ``wf-events-1``, are
idempotency keys here), so a second demo on the same database starts runs of its own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

import django_durable as durable
from django_durable.models import Message, Run, RunValue
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage

from .workflows import APPROVAL_TIMEOUT, STREAM_KEY

SEED = "DBOS: workflow communication, events, messages and streams (seeds/002)"
API = "/durable"
USERNAME = "dbos-demo"
TERMINAL = {str(status) for status in durable.RunStatus.terminal()}
# Times are read from two clocks (the workers' and the database's): allow them this much.
SLACK = 0.05
T = TypeVar("T")


# --- the HTTP side ---------------------------------------------------------------------


def logged_in() -> Client:
    """Return a test client logged in as the demo's user, who owns the runs it starts."""
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(f"{API}/{path}", body, content_type="application/json")


def start_over_http(
    stage: Stage, client: Client, workflow: str, steps: int, workflow_id: str
) -> durable.RunHandle:
    """``POST runs/``: the seed's ``POST /start-workflow-.../{workflow_id}/{steps}``."""
    body = {"workflow": workflow, "args": [steps], "idempotency_key": workflow_id}
    response = post(client, "runs/", body)
    stage.check(response.status_code == 201, f"POST runs/ answered {response.content!r}")
    handle = durable.get_run(response.json()["id"])
    stage.say(f"POST {API}/runs/ {json.dumps(body)} -> 201, run {handle.id}")
    return handle


def short(run: durable.RunHandle) -> str:
    """Return the end of a run's id, as the admin's list shows it (and finds it by)."""
    return run.id[-12:]


def tag() -> str:
    return uuid.uuid4().hex[:6]


# --- dbos-values -----------------------------------------------------------------------


@scenario(
    "dbos-values",
    seed=SEED,
    title="DBOS's events: progress, status and result, read one by one or all at once",
    order=200,
)
def values(stage: Stage) -> None:
    """Follow a run's progress over HTTP; read its status, result and all its values."""
    stage.worker()
    client = logged_in()
    workflow_id = f"wf-events-{tag()}"
    handle = start_over_http(stage, client, "dbos.values", 3, workflow_id)
    body = {"workflow": "dbos.values", "args": [3], "idempotency_key": workflow_id}
    again = post(client, "runs/", body)
    stage.measured(
        f"the same workflow id started again: HTTP {again.status_code}, "
        f"{'the same run' if again.json().get('id') == handle.id else 'ANOTHER run'}"
    )
    stage.check(
        again.status_code == 200 and again.json()["id"] == handle.id,
        "Starting the same workflow id again did not return the same run.",
    )
    # DBOS's get_event blocks until the event is set: a second client waits for the result
    # while the first follows the progress.
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(in_thread, wait_for_result, handle.id, stage.timeout)
        seen = follow_progress(stage, client, handle)
        there, result, blocked, running = waiter.result()
    over_http = client.get(f"{API}/runs/{handle.id}/values/result/?timeout=5").json()["value"]
    everything = handle.values()
    page = client.get(f"{API}/runs/{handle.id}/").json()
    report_values(stage, handle, seen, result, over_http, everything, page)
    stage.measured(
        f"durable.get_value(run, 'result', timeout=...) was called while the run was "
        f"{running}, {'with its result' if there else 'with no result yet'}, and returned "
        f"{blocked:.2f}s later, when the run set it"
    )
    stage.check(
        running not in TERMINAL and not there,
        f"get_value() was asked while the run was {running}, when its result was there.",
    )


def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Call ``function`` in a thread of the scenario; close the thread's database connection."""
    try:
        return function(*args)
    finally:
        connections.close_all()


def wait_for_result(run_id: str, timeout: float) -> tuple[bool, Any, float, str]:
    """Wait for the run's "result" value, as DBOS's ``get_event`` does.

    Return whether it was there already, the value, how long the call took, and the run's
    status before the call.
    """
    running = str(durable.get_run(run_id).status)
    there = RunValue.objects.filter(run_id=run_id, key="result").exists()
    began = time.monotonic()
    result = durable.get_value(run_id, "result", timeout=timeout)
    return there, result, time.monotonic() - began, running


def follow_progress(
    stage: Stage, client: Client, handle: durable.RunHandle
) -> list[tuple[float, str]]:
    """Long-poll ``values/progress/`` with ``after=`` until the run ends; return what came.

    Each answer is the first version newer than the one sent, or the same one once the
    run has finished: the loop the HTTP API reference gives for a progress bar.
    """
    seen: list[tuple[float, str]] = []
    version = None
    deadline = time.monotonic() + stage.timeout
    while time.monotonic() < deadline:
        after = "" if version is None else f"&after={version}"
        url = f"{API}/runs/{handle.id}/values/progress/?timeout=5{after}"
        response = client.get(url)
        if response.status_code == 404:  # no progress published yet
            continue
        body = response.json()
        if body["version"] != version:
            version = body["version"]
            status = client.get(f"{API}/runs/{handle.id}/values/status/")
            now = status.json()["value"] if status.status_code == 200 else "(none yet)"
            seen.append((body["value"]["percent"], now))
            stage.say(f"  GET .../values/progress/: {json.dumps(body['value'])}, status {now!r}")
        elif body["run_status"] in TERMINAL:
            return seen
    stage.check(False, f"The progress of run {handle.id} did not end within {stage.timeout}s.")
    return seen


def report_values(
    stage: Stage,
    handle: durable.RunHandle,
    seen: list[tuple[float, str]],
    result: Any,
    over_http: Any,
    everything: dict[str, Any],
    page: dict[str, Any],
) -> None:
    percents = [percent for percent, _ in seen]
    stored = RunValue.objects.filter(run_id=handle.id)
    versions = {key: stored.filter(key=key).count() for key in sorted(everything)}
    stage.measured(
        f"the client saw progress {' -> '.join(f'{p:g}%' for p in percents)}, "
        f"each with its status; versions kept in the database: {json.dumps(versions)}"
    )
    stage.measured(
        f"result: {json.dumps(result)}; GET .../values/result/ the same: {over_http == result}"
    )
    stage.measured(
        f"all values at once, handle.values(): {sorted(everything)} "
        f"(status {everything.get('status')!r}); GET runs/{{id}}/ 'values' the same: "
        f"{page['values'] == everything}"
    )
    stage.check(
        len(percents) >= 2 and percents == sorted(set(percents)) and percents[-1] == 100,
        f"The progress went {percents}, not up to 100%.",
    )
    stage.check(
        result == handle.result() == over_http and len(result["results"]) == 3,
        f"The result value {result!r} is not the run's result.",
    )
    stage.check(
        sorted(everything) == ["progress", "result", "status"]
        and everything["status"] == "Completed"
        and page["values"] == everything
        and versions["progress"] == 4,
        f"All values: {everything}, over HTTP {page['values']}, versions {versions}.",
    )


# --- dbos-messages ---------------------------------------------------------------------

APPROVAL = {"approved": True, "message": "Approved by admin"}
REJECTION = {"approved": False, "reason": "Rejected"}


@scenario(
    "dbos-messages",
    seed=SEED,
    title="DBOS's messages: approve or reject a waiting run, or let it time out",
    order=210,
)
def messages(stage: Stage) -> None:
    """Approve one run over HTTP, reject one from Python, leave one to time out."""
    stage.worker()
    client = logged_in()
    runs = {
        name: start_over_http(stage, client, "dbos.messages", 3, f"wf-msg-{tag()}-{name}")
        for name in ("approve", "reject", "silence")
    }
    for name, handle in runs.items():
        stage.say(f"  {name}: {stage.waiting(handle)}")
    ids = [handle.id for handle in runs.values()]
    waiting = Run.objects.filter(pk__in=ids, status=durable.RunStatus.WAITING)
    held = waiting.filter(claimed_by__isnull=False).count()
    stage.measured(
        f"{waiting.count()} async runs waiting in await ctx.recv(), {held} held by a worker"
    )
    stage.check(held == 0, f"{held} runs hold a worker while they wait for a message.")
    approve = post(
        client,
        f"runs/{runs['approve'].id}/messages/",
        {"message": APPROVAL, "topic": "notification"},
    )
    stage.say(
        f"POST .../messages/ {json.dumps(APPROVAL)} -> {approve.status_code} "
        f"{json.dumps(approve.json())}"
    )
    message_id = durable.send(runs["reject"].id, REJECTION, topic="notification")
    stage.say(
        f"durable.send(run, {json.dumps(REJECTION)}, topic='notification') -> message #{message_id}"
    )
    outcomes = {name: stage.result(handle) for name, handle in runs.items()}
    stage.say("An approval for the run that timed out comes too late (Django logs the 409):")
    late = post(
        client,
        f"runs/{runs['silence'].id}/messages/",
        {"message": APPROVAL, "topic": "notification"},
    )
    report_messages(stage, runs, outcomes, approve.status_code, late)


def waited(handle: durable.RunHandle) -> float:
    """Return how long the run waited: from "Waiting for approval" to the next status."""
    statuses = RunValue.objects.filter(run_id=handle.id, key="status").order_by("id")
    first, second = statuses[0], statuses[1]
    return (second.created_at - first.created_at).total_seconds()


def report_messages(
    stage: Stage,
    runs: dict[str, durable.RunHandle],
    outcomes: dict[str, dict[str, Any]],
    approved_status: int,
    late: Any,
) -> None:
    limit = APPROVAL_TIMEOUT.total_seconds()
    for name, handle in runs.items():
        outcome = outcomes[name]
        stage.measured(
            f"{name}: run {short(handle)} waited {waited(handle):.2f}s, then "
            f"{outcome['outcome']}, {len(outcome.get('results', []))} steps run, "
            f"status value {handle.get_value('status')!r}"
        )
    stored = Message.objects.filter(run_id__in=[handle.id for handle in runs.values()])
    taken = stored.filter(consumed_at__isnull=False).count()
    left = stored.filter(run_id=runs["silence"].id).count()
    stage.measured(
        f"{stored.count()} messages stored, {taken} taken by ctx.recv; a late approval to the "
        f"timed-out run: HTTP {late.status_code} {late.json().get('code')}, {left} stored for it"
    )
    stage.check(
        approved_status == 202
        and outcomes["approve"] == {**outcomes["approve"], "outcome": "approved"}
        and len(outcomes["approve"]["results"]) == 3,
        f"The approved run ended {outcomes['approve']}.",
    )
    stage.check(
        outcomes["reject"] == {"outcome": "rejected", "notification": REJECTION},
        f"The rejected run ended {outcomes['reject']}.",
    )
    stage.check(
        outcomes["silence"] == {"outcome": "timed out"}
        and waited(runs["silence"]) >= limit - SLACK,
        f"The run nobody answered ended {outcomes['silence']} after {waited(runs['silence'])}s.",
    )
    stage.check(
        late.status_code == 409 and left == 0 and taken == stored.count() == 2,
        f"Late approval: HTTP {late.status_code}; {taken} of {stored.count()} messages taken.",
    )


# --- dbos-streams ----------------------------------------------------------------------


@scenario(
    "dbos-streams",
    seed=SEED,
    title="DBOS's streams: read a run's stream live over SSE and from Python, and as JSON pages",
    order=220,
)
def streams(stage: Stage) -> None:
    """Read a stream live as Server-Sent Events and as JSON pages; resume after an id."""
    stage.worker()
    client = logged_in()
    handle = start_over_http(stage, client, "dbos.streams", 5, f"wf-stream-{tag()}")
    stream = f"{API}/runs/{handle.id}/streams/{STREAM_KEY}/"
    first = stage.until(lambda: non_empty_page(client, stream, 0), "the first stream item")
    stage.say(
        f"GET .../streams/{STREAM_KEY}/?offset=0 while the run works: "
        f"{len(first['items'])} items, next_offset {first['next_offset']}, "
        f"closed {first['closed']}"
    )
    # A page without a Django login, as a browser's EventSource: a per-run token that may
    # only read this run's streams, in the query string (EventSource cannot set headers).
    token = handle.create_token(abilities=("stream",), expires_in=timedelta(minutes=15))
    browser = Client(HTTP_HOST="localhost")
    # Meanwhile a Python client follows the stream, as DBOS's client.read_stream() does.
    with ThreadPoolExecutor(1) as pool:
        reader = pool.submit(in_thread, read_live, handle.id, stage.timeout)
        response = browser.get(f"{stream}?token={token}", HTTP_ACCEPT="text/event-stream")
        live = list(follow_events(response, handle))
        from_python = reader.result()
    rest = client.get(f"{stream}?offset={first['next_offset']}").json()
    resumed = browser.get(
        f"{stream}?token={token}", HTTP_ACCEPT="text/event-stream", HTTP_LAST_EVENT_ID="5"
    )
    after_five = list(follow_events(resumed, handle))
    report_streams(stage, handle, response, live, first, rest, after_five)
    stored = list(durable.read_stream(handle.id, STREAM_KEY))
    going = sum(still for _, _, still in from_python)
    stage.measured(
        f"durable.stream_items(run, {STREAM_KEY!r}, follow=True) in Python: "
        f"{len(from_python)} items, {going} of them while the run was still working; "
        f"the stream's items in order: {[value for _, value, _ in from_python] == stored}"
    )
    stage.check(
        [(offset, value) for offset, value, _ in from_python] == list(enumerate(stored))
        and going >= 2,
        f"Following from Python gave {len(from_python)} items, {going} while the run worked.",
    )


def read_live(run_id: str, timeout: float) -> list[tuple[int, Any, bool]]:
    """Follow the stream until it closes: (offset, value, whether the run was still going)."""
    items = durable.stream_items(run_id, STREAM_KEY, follow=True, timeout=timeout)
    return [(offset, value, not durable.get_run(run_id).is_finished) for offset, value in items]


def non_empty_page(client: Client, stream: str, offset: int) -> dict[str, Any]:
    page = client.get(f"{stream}?offset={offset}").json()
    return page if page["items"] else {}


def follow_events(response: Any, handle: durable.RunHandle) -> Iterator[tuple[str, str, str, bool]]:
    """Yield each Server-Sent Event as (event, id, data, whether the run was still going).

    ``response`` is the test client's answer to a ``text/event-stream`` request; its
    frames are read as the view produces them: each arrives when its item commits.
    """
    buffer = ""
    for chunk in response.streaming_content:
        buffer += bytes(chunk).decode()
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in frame.splitlines() if ": " in line)
            if "data" in fields:
                going = not handle.refresh().is_finished
                yield fields.get("event", "message"), fields.get("id", ""), fields["data"], going


def report_streams(
    stage: Stage,
    handle: durable.RunHandle,
    response: Any,
    live: list[tuple[str, str, str, bool]],
    first: dict[str, Any],
    rest: dict[str, Any],
    after_five: list[tuple[str, str, str, bool]],
) -> None:
    items = [(int(id_), json.loads(data)) for event, id_, data, _ in live if event == "message"]
    while_running = sum(going for event, _, _, going in live if event == "message")
    final = live[-1][0] if live else None
    stored = list(durable.read_stream(handle.id, STREAM_KEY))
    result = stage.result(handle)
    stage.measured(
        f"SSE ({response['Content-Type']}): {len(items)} items, offsets "
        f"{items[0][0]}-{items[-1][0]}, {while_running} of them received while the run "
        f"was still working, then 'event: {final}'"
    )
    for offset, value in items[:3]:
        stage.say(f"    id: {offset}  data: {json.dumps(value)}")
    stage.say(f"    ... {len(items) - 3} more")
    pages = first["items"] + rest["items"]
    stage.measured(
        f"JSON pages: {len(first['items'])} items while the run worked (closed "
        f"{first['closed']}), then {len(rest['items'])} from offset {first['next_offset']} "
        f"(closed {rest['closed']}); the same items as over SSE: "
        f"{[item['value'] for item in pages] == [value for _, value in items]}"
    )
    resumed = [int(id_) for event, id_, _, _ in after_five if event == "message"]
    stage.measured(
        f"reconnected with Last-Event-ID: 5: offsets {resumed[0]}-{resumed[-1]}, then "
        f"'event: {after_five[-1][0]}'; durable.read_stream() reads {len(stored)} items; "
        f"the run says {result['total_messages']}"
    )
    stage.check(
        [value for _, value in items] == stored
        and [offset for offset, _ in items] == list(range(len(stored)))
        and len(stored) == result["total_messages"] == 12
        and final == "close",
        f"Over SSE {len(items)} items then {final!r}; stored {len(stored)}.",
    )
    stage.check(while_running >= 2, f"Only {while_running} items arrived while the run worked.")
    stage.check(
        [item["value"] for item in pages] == stored and rest["closed"] and not first["closed"],
        "The JSON pages do not hold the stream's items once, in order, ending closed.",
    )
    stage.check(
        resumed == list(range(6, len(stored))) and after_five[-1][0] == "close",
        f"Resuming after id 5 gave offsets {resumed}.",
    )
