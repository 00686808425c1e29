"""The HTTP API: starting, reading, messaging, long-polling, streaming, events, permissions."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import AsyncClient
from rest_framework.test import APIClient

import django_durable as durable
from django_durable import Worker
from django_durable.models import Event, Message, Run, RunStatus
from django_durable.testing import run_all
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"


def make_user(name: str, *perms: str):
    user = get_user_model().objects.create_user(name, password="pw")
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def ada():
    return make_user("ada")


@pytest.fixture
def client(ada) -> APIClient:
    api = APIClient()
    api.force_authenticate(ada)
    return api


def client_for(user) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


def start(api: APIClient, workflow: str = "tests.http_receives", **body):
    return api.post(f"{BASE}/runs/", {"workflow": workflow, **body}, format="json")


# --- access ------------------------------------------------------------------------------


def test_anonymous_requests_are_refused():
    anonymous = APIClient()
    assert anonymous.get(f"{BASE}/runs/").status_code in (401, 403)
    assert start(anonymous).status_code in (401, 403)
    assert anonymous.post(f"{BASE}/events/", {"name": "x"}, format="json").status_code in (401, 403)
    assert not Run.objects.exists()


def test_users_list_their_own_runs_and_staff_with_view_run_see_all(client, ada):
    mine = wf.add.using(owner=ada).start(1, 2)
    theirs = wf.add.using(owner=make_user("bob")).start(1, 2)
    nobody = wf.add.start(1, 2)
    listed = client.get(f"{BASE}/runs/").json()
    assert [run["id"] for run in listed["results"]] == [mine.id]
    staff = client_for(make_user("eve", "django_durable.view_run"))
    everyone = staff.get(f"{BASE}/runs/").json()["results"]
    assert {run["id"] for run in everyone} == {mine.id, theirs.id, nobody.id}


def test_a_run_others_may_not_see_is_not_found(client):
    other = wf.add.using(owner=make_user("bob")).start(1, 2)
    assert client.get(f"{BASE}/runs/{other.id}/").status_code == 404
    assert client.get(f"{BASE}/runs/{uuid.uuid4()}/").status_code == 404
    assert client.get(f"{BASE}/runs/not-a-uuid/").status_code == 404
    response = client.post(f"{BASE}/runs/{other.id}/messages/", {"message": 1}, format="json")
    assert response.status_code == 404
    assert not Message.objects.exists()


# --- starting ----------------------------------------------------------------------------


def test_start_a_workflow_that_allows_http(client, ada):
    response = start(client, args=["first"])
    assert response.status_code == 201, response.json()
    body = response.json()
    run = Run.objects.get(pk=body["id"])
    assert run.owner == ada
    assert body["workflow"] == "tests.http_receives"
    assert body["status"] == "pending"
    assert body["input"] == {"args": ["first"], "kwargs": {}}


def test_workflows_not_declared_for_http_cannot_be_started(client):
    response = start(client, workflow="tests.add", args=[1, 2])
    assert (response.status_code, response.json()["code"]) == (403, "not_startable")
    # As if it did not exist: names cannot be probed.
    unknown = start(client, workflow="tests.no_such_workflow")
    assert (unknown.status_code, unknown.json()["code"]) == (403, "not_startable")
    detail = response.json()["detail"]
    assert detail == unknown.json()["detail"].replace("tests.no_such_workflow", "tests.add")
    assert "http_start=True" in detail  # says in words what a startable workflow needs
    assert not Run.objects.exists()


def test_with_debug_the_refusal_says_which_reason_it_is(client, settings):
    settings.DEBUG = True
    refused = start(client, workflow="tests.add", args=[1, 2]).json()
    assert refused["code"] == "not_startable"
    assert "it is not declared with http_start=True" in refused["detail"]
    assert "DEBUG = True" in refused["detail"]
    unknown = start(client, workflow="tests.no_such_workflow").json()
    assert "no workflow of that name is registered" in unknown["detail"]
    assert not Run.objects.exists()


def test_idempotency_keys_are_per_user(client):
    first = start(client, idempotency_key="order-1")
    again = start(client, idempotency_key="order-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    other = start(client_for(make_user("bob")), idempotency_key="order-1")
    assert other.status_code == 201
    assert other.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"workflow": "tests.http_receives", "args": ["a\x00b"]}, "invalid_payload"),
    ],
)
def test_bad_start_requests_are_400_with_a_code(client, body, code):
    response = client.post(f"{BASE}/runs/", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert "tests.add" not in response.json()["detail"]  # no list of workflows for clients
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workflow": "tests.http_receives", "args": "not a list"}, "args"),
        ({"workflow": "tests.http_receives", "delay": -1}, "delay"),
        ({"workflow": "tests.http_receives", "kwargs": [1]}, "kwargs"),
        ({}, "workflow"),
    ],
)
def test_invalid_start_fields_are_400_naming_the_field(client, body, field):
    response = client.post(f"{BASE}/runs/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not Run.objects.exists()


def test_malformed_and_deeply_nested_json_are_400_not_500(client):
    bad = client.generic("POST", f"{BASE}/runs/", "{not json", content_type="application/json")
    assert bad.status_code == 400
    deep = '{"workflow": "tests.http_receives", "args": [' + "[" * 100_000 + "]" * 100_000 + "]}"
    nested = client.generic("POST", f"{BASE}/runs/", deep, content_type="application/json")
    assert nested.status_code == 400
    assert "nested deeper than 64 levels" in nested.json()["detail"]
    assert not Run.objects.exists()


def test_an_oversized_body_is_413(client, settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 1000}
    body = json.dumps({"workflow": "tests.http_receives", "args": ["x" * 200_000]})
    response = client.generic("POST", f"{BASE}/runs/", body, content_type="application/json")
    assert response.status_code == 413
    small_but_over = {"workflow": "tests.http_receives", "args": ["x" * 5000]}
    assert client.post(f"{BASE}/runs/", small_but_over, format="json").status_code == 413
    assert not Run.objects.exists()


# --- reading -----------------------------------------------------------------------------


def test_a_run_page_shows_progress_values_steps_and_result(client, worker):
    run_id = start(client, args=["x"]).json()["id"]
    worker.run_once()
    waiting = client.get(f"{BASE}/runs/{run_id}/").json()
    assert waiting["status"] == "waiting"
    assert waiting["waiting_for"] == "message on 'approval'"
    assert waiting["progress"]["message"] == "waiting for approval"
    durable.send(run_id, "ok", topic="approval")
    run_all()
    page = client.get(f"{BASE}/runs/{run_id}/").json()
    assert page["status"] == "completed"
    assert page["result"] == {"label": "x", "message": "ok"}
    assert page["progress"] == {"done": 2, "total": 2, "percent": 100.0, "message": "done"}
    assert page["values"]["progress"]["message"] == "done"
    assert [s["kind"] for s in page["steps"]][:3] == ["value", "recv", "value"]
    assert page["steps_count"] == len(page["steps"])
    listed = client.get(f"{BASE}/runs/").json()["results"]
    assert listed[0]["progress"]["percent"] == 100.0


def test_tracebacks_only_for_users_with_view_run(client, worker):
    run_id = start(client, workflow="tests.http_fails").json()["id"]
    run_all()
    error = client.get(f"{BASE}/runs/{run_id}/").json()["error"]
    assert error["type"] == "ValueError"
    assert "traceback" not in error
    staff = client_for(make_user("eve", "django_durable.view_run"))
    assert "secret internals" in staff.get(f"{BASE}/runs/{run_id}/").json()["error"]["traceback"]


def test_list_filters_and_cursor_pagination(client, ada):
    for _ in range(5):
        wf.add.using(owner=ada).start(1, 1)
    wf.boom.using(owner=ada).start()
    page = client.get(f"{BASE}/runs/?page_size=2&workflow=tests.add").json()
    assert len(page["results"]) == 2
    second = client.get(page["next"]).json()
    assert len(second["results"]) == 2
    assert not {r["id"] for r in page["results"]} & {r["id"] for r in second["results"]}
    assert len(client.get(f"{BASE}/runs/?status=pending,failed").json()["results"]) == 6
    assert client.get(f"{BASE}/runs/?status=completed").json()["results"] == []


# --- messages ----------------------------------------------------------------------------


def test_send_a_message_over_http_wakes_the_run(client, worker):
    run_id = start(client).json()["id"]
    worker.run_once()
    response = client.post(
        f"{BASE}/runs/{run_id}/messages/",
        {"message": {"approved": True}, "topic": "approval", "idempotency_key": "click-1"},
        format="json",
    )
    assert response.status_code == 202
    again = client.post(
        f"{BASE}/runs/{run_id}/messages/",
        {"message": {"approved": True}, "topic": "approval", "idempotency_key": "click-1"},
        format="json",
    )
    assert again.json()["id"] == response.json()["id"]
    assert Run.objects.get(pk=run_id).status == RunStatus.PENDING
    run_all()
    assert durable.get_run(run_id).result(timeout=1)["message"] == {"approved": True}


def test_seeing_a_run_is_not_enough_to_message_it():
    owner = make_user("ada")
    run = wf.receives.using(owner=owner).start(1)
    viewer = client_for(make_user("eve", "django_durable.view_run"))
    assert viewer.get(f"{BASE}/runs/{run.id}/").status_code == 200
    denied = viewer.post(f"{BASE}/runs/{run.id}/messages/", {"message": 1}, format="json")
    assert denied.status_code == 403
    operator = client_for(make_user("op", "django_durable.view_run", "django_durable.operate_run"))
    allowed = operator.post(f"{BASE}/runs/{run.id}/messages/", {"message": 1}, format="json")
    assert allowed.status_code == 202


def test_a_bad_message_is_400(client):
    run_id = start(client).json()["id"]
    url = f"{BASE}/runs/{run_id}/messages/"
    assert client.post(url, {}, format="json").status_code == 400
    assert client.post(url, {"message": "x", "topic": "t" * 300}, format="json").status_code == 400
    assert client.post(url, {"message": "\x00"}, format="json").status_code == 400
    assert not Message.objects.exists()


# --- values (long polling) ---------------------------------------------------------------


def test_read_a_value_and_long_poll_for_a_newer_version(client, worker):
    run_id = start(client).json()["id"]
    assert client.get(f"{BASE}/runs/{run_id}/values/progress/").status_code == 404
    worker.run_once()
    first = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    assert first["value"]["message"] == "waiting for approval"
    durable.send(run_id, "ok", topic="approval")

    def work() -> None:
        time.sleep(0.2)
        try:
            run_all()
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        started = time.monotonic()
        url = f"{BASE}/runs/{run_id}/values/progress/?timeout=10&after={first['version']}"
        newer = client.get(url).json()
        waited = time.monotonic() - started
    finally:
        thread.join()
    assert newer["version"] > first["version"]
    assert newer["value"]["done"] >= 1
    assert 0.1 < waited < 10


def test_value_long_poll_times_out_with_the_current_value(client, worker, settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "API_MAX_WAIT": 0.3}
    run_id = start(client).json()["id"]
    worker.run_once()
    current = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    started = time.monotonic()
    # A 600 s timeout is capped at API_MAX_WAIT (bounded loosely: a busy machine is slow).
    same = client.get(
        f"{BASE}/runs/{run_id}/values/progress/?timeout=600&after={current['version']}"
    )
    assert time.monotonic() - started < 60
    assert same.json()["version"] == current["version"]
    assert client.get(f"{BASE}/runs/{run_id}/values/progress/?timeout=abc").status_code == 400
    for bad, detail in [("nan", "not NaN"), ("-1", "cannot be negative")]:
        response = client.get(f"{BASE}/runs/{run_id}/values/progress/?timeout={bad}")
        assert response.status_code == 400 and detail in response.json()["detail"]
    assert client.get(f"{BASE}/runs/{run_id}/values/never/?timeout=0.2").status_code == 404


# --- streams -----------------------------------------------------------------------------


def _finished_stream_run(client, worker) -> str:
    run_id = start(client, args=["s"]).json()["id"]
    durable.send(run_id, "ok", topic="approval")
    run_all()
    return run_id


def test_stream_items_as_json(client, worker):
    run_id = _finished_stream_run(client, worker)
    page = client.get(f"{BASE}/runs/{run_id}/streams/log/").json()
    assert [item["offset"] for item in page["items"]] == [0, 1, 2]
    assert page["items"][1]["value"] == {"line": 1, "label": "s"}
    assert (page["next_offset"], page["closed"]) == (3, True)
    tail = client.get(f"{BASE}/runs/{run_id}/streams/log/?offset=2").json()
    assert [item["offset"] for item in tail["items"]] == [2]


def test_server_sent_events_resume_from_last_event_id(client, worker):
    run_id = _finished_stream_run(client, worker)
    response = client.get(
        f"{BASE}/runs/{run_id}/streams/log/",
        HTTP_ACCEPT="text/event-stream",
        HTTP_LAST_EVENT_ID="0",
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Content-Encoding"] == "identity"
    body = b"".join(response.streaming_content).decode()
    assert "id: 0\n" not in body  # resumed after the last event the client saw
    assert 'id: 1\ndata: {"line": 1, "label": "s"}\n\n' in body
    assert body.rstrip().endswith("event: close\ndata: {}")


def test_server_sent_events_follow_a_running_stream_under_asgi(ada):
    run = wf.streams.using(owner=ada).start(3, pause=0.1)
    thread = threading.Thread(target=_drain_in_thread)
    thread.start()

    async def read() -> tuple[int, str]:
        client = AsyncClient()
        await client.aforce_login(ada)
        response = await client.get(
            f"{BASE}/runs/{run.id}/streams/out/", headers={"Accept": "text/event-stream"}
        )
        chunks = [chunk async for chunk in response.streaming_content]
        return response.status_code, b"".join(chunks).decode()

    try:
        status_code, body = async_to_sync(read)()
    finally:
        thread.join()
    assert status_code == 200
    assert [line for line in body.splitlines() if line.startswith("id:")] == [
        "id: 0",
        "id: 1",
        "id: 2",
    ]
    assert "event: close" in body


def test_server_sent_events_end_when_the_run_ends_without_closing(client, ada, worker):
    run = wf.streams.using(owner=ada).start(1, close=False)
    run_all()
    response = client.get(f"{BASE}/runs/{run.id}/streams/out/", HTTP_ACCEPT="text/event-stream")
    body = b"".join(response.streaming_content).decode()
    assert "id: 0\n" in body
    assert 'event: end\ndata: {"status": "completed"}' in body


# --- events ------------------------------------------------------------------------------


def test_emitting_events_needs_the_add_event_permission(client):
    assert client.post(f"{BASE}/events/", {"name": "x"}, format="json").status_code == 403
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    waiting = wf.waits_event.start("paid:order-9")
    Worker().run_once()
    response = emitter.post(
        f"{BASE}/events/", {"name": "paid:order-9", "data": {"amount": 5}}, format="json"
    )
    assert response.status_code == 202
    assert Event.objects.get(pk=response.json()["id"]).get_data() == {"amount": 5}
    assert waiting.refresh().status == RunStatus.PENDING


def test_a_structured_cloud_event_is_emitted_once(client):
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    cloud_event = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "payment-service",
        "type": "payment.completed",
        "subject": "order-7",
        "datacontenttype": "application/json",
        "data": {"amount": 99.99},
    }
    body = json.dumps(cloud_event)
    first = emitter.generic(
        "POST", f"{BASE}/events/", body, content_type="application/cloudevents+json"
    )
    again = emitter.generic(
        "POST", f"{BASE}/events/", body, content_type="application/cloudevents+json"
    )
    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json()["id"] == again.json()["id"]
    event = Event.objects.get()
    assert event.name == "payment.completed:order-7"
    assert (event.source, event.type, event.get_data()) == (
        "payment-service",
        "payment.completed",
        {"amount": 99.99},
    )


def test_a_binary_mode_cloud_event(client):
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    response = emitter.post(
        f"{BASE}/events/",
        {"amount": 1},
        format="json",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID="evt-2",
        HTTP_CE_SOURCE="shop",
        HTTP_CE_TYPE="order.created",
    )
    assert response.status_code == 202, response.json()
    assert Event.objects.get().name == "order.created"


@pytest.mark.parametrize(
    "cloud_event",
    [
        {"specversion": "0.3", "id": "1", "source": "s", "type": "t"},
        {"specversion": "1.0", "source": "s", "type": "t"},
        {"specversion": "1.0", "id": "1", "source": "s", "type": "t", "data_base64": "AA=="},
    ],
)
def test_bad_cloud_events_are_400(cloud_event):
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    response = emitter.generic(
        "POST",
        f"{BASE}/events/",
        json.dumps(cloud_event),
        content_type="application/cloudevents+json",
    )
    assert response.status_code == 400
    assert not Event.objects.exists()


# --- schema ------------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_endpoints(client):
    response = client.get(f"{BASE}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["servers"] == [{"url": "/durable"}]
    for path in (
        "/runs/",
        "/runs/{run_id}/",
        "/runs/{run_id}/messages/",
        "/runs/{run_id}/values/{key}/",
        "/runs/{run_id}/streams/{key}/",
        "/events/",
    ):
        assert path in schema["paths"], path


def _drain_in_thread() -> None:
    try:
        run_all()
    finally:
        connection.close()


# --- review fixes -------------------------------------------------------------------------


def test_a_key_used_by_another_workflow_is_400_invalid_request(client):
    assert start(client, idempotency_key="k").status_code == 201
    other = start(client, workflow="tests.http_fails", idempotency_key="k")
    assert other.status_code == 400
    assert other.json()["code"] == "invalid_request"


def test_anonymous_starts_cannot_use_idempotency_keys(settings):
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_ACCESS_POLICY": "tests.testapp.policies.OpenPolicy",
    }
    anonymous = APIClient()
    assert start(anonymous).status_code == 201
    refused = start(anonymous, idempotency_key="shared")
    assert refused.status_code == 400
    assert Run.objects.count() == 1


def test_a_custom_can_view_opens_single_runs(settings):
    settings.DJANGO_DURABLE = {
        **settings.DJANGO_DURABLE,
        "API_ACCESS_POLICY": "tests.testapp.policies.AuditorPolicy",
    }
    run = wf.add.using(owner=make_user("bob")).start(1, 2)
    auditor = client_for(make_user("auditor"))
    assert auditor.get(f"{BASE}/runs/{run.id}/").status_code == 200
    assert auditor.get(f"{BASE}/runs/").json()["results"] == []  # lists use visible_runs


def test_the_value_endpoint_says_whether_the_run_is_still_going(client, worker):
    run_id = start(client).json()["id"]
    worker.run_once()
    waiting = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    assert waiting["run_status"] == "waiting"
    durable.send(run_id, "ok", topic="approval")
    run_all()
    done = client.get(f"{BASE}/runs/{run_id}/values/progress/").json()
    assert done["run_status"] == "completed"


def test_cloud_event_keys_are_never_cut_and_long_fields_are_refused():
    emitter = client_for(make_user("hook", "django_durable.add_event"))

    def post(**attributes):
        event = {"specversion": "1.0", "source": "s", "type": "t", "id": "1", **attributes}
        return emitter.generic(
            "POST",
            f"{BASE}/events/",
            json.dumps(event),
            content_type="application/cloudevents+json",
        )

    assert post(source="s" * 300).status_code == 400
    first = post(id="x" * 300 + "a")
    second = post(id="x" * 300 + "b")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]  # not cut into one key
    assert post(id="x" * 300 + "a").json()["id"] == first.json()["id"]


def test_a_binary_cloud_event_without_a_body_has_null_data():
    emitter = client_for(make_user("hook", "django_durable.add_event"))
    response = emitter.post(
        f"{BASE}/events/",
        HTTP_CE_SPECVERSION="1.0",
        HTTP_CE_ID="e",
        HTTP_CE_SOURCE="s",
        HTTP_CE_TYPE="ping",
    )
    assert response.status_code == 202, response.json()
    assert Event.objects.get().get_data() is None


# --- operating runs: cancel, retry, children ------------------------------------------------


def cancel_url(run_id: str) -> str:
    return f"{BASE}/runs/{run_id}/cancel/"


def retry_url(run_id: str) -> str:
    return f"{BASE}/runs/{run_id}/retry/"


def test_cancel_a_sleeping_run_runs_its_cleanup_and_ends_cancelled(client, ada, worker):
    from tests.testapp.models import Execution

    run = wf.cleanup.using(owner=ada).start()
    worker.run_once()
    assert run.refresh().status == RunStatus.WAITING
    response = client.post(cancel_url(run.id), {"reason": "customer left"}, format="json")
    assert response.status_code == 202, response.json()
    page = response.json()
    assert page["id"] == run.id and page["status"] == "pending"  # woken to stop
    assert page["cancel_requested"] is True and page["cancel_reason"] == "customer left"
    assert page["cancel_requested_at"] is not None
    run_all()
    page = client.get(f"{BASE}/runs/{run.id}/").json()
    assert page["status"] == "cancelled"
    assert page["error"]["message"] == "customer left"
    assert Execution.objects.filter(run_id=run.id, label="cleanup").count() == 1
    assert Execution.objects.filter(run_id=run.id, label="never").count() == 0


def test_cancel_without_a_body_ends_a_run_that_never_started(client, ada):
    run = wf.add.using(owner=ada).start(1, 2)
    response = client.post(cancel_url(run.id))
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "cancelled"
    assert response.json()["cancel_reason"] == "cancelled"
    assert run.refresh().status == RunStatus.CANCELLED


def test_cancel_a_finished_run_is_409_run_finished(client, ada, worker):
    run = wf.add.using(owner=ada).start(1, 2)
    run_all()
    response = client.post(cancel_url(run.id), {"reason": "too late"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "run_finished"
    assert run.refresh().status == RunStatus.COMPLETED
    assert not run.model.cancel_reason


def test_a_bad_cancel_body_is_400(client, ada):
    run = wf.add.using(owner=ada).start(1, 2)
    response = client.post(cancel_url(run.id), {"reason": "r" * 256}, format="json")
    assert response.status_code == 400 and list(response.json()) == ["reason"]
    assert client.post(cancel_url(run.id), [1], format="json").status_code == 400
    assert run.refresh().status == RunStatus.PENDING


def test_cancel_a_parent_cancels_its_children_shown_in_its_page(client, ada, worker):
    parent = wf.parent_fanout.using(owner=ada).start(2)
    worker.run_once()  # the parent starts its children and waits
    page = client.post(cancel_url(parent.id), format="json").json()
    assert {child["status"] for child in page["children"]} == {"cancelled"}  # never started
    run_all()
    assert parent.refresh().status == RunStatus.CANCELLED


def test_retry_a_failed_run_then_it_completes(client, ada, worker):
    run = wf.retry_me.using(owner=ada).start()
    run_all()
    assert run.refresh().status == RunStatus.FAILED
    response = client.post(retry_url(run.id))
    assert response.status_code == 202, response.json()
    page = response.json()
    assert (page["status"], page["attempt"], page["error"]) == ("pending", 2, None)
    run_all()
    page = client.get(f"{BASE}/runs/{run.id}/").json()
    assert (page["status"], page["result"]) == ("completed", 7)


def test_retry_a_cancelled_run(client, ada, worker):
    run = wf.cleanup.using(owner=ada).start()
    worker.run_once()
    client.post(cancel_url(run.id))
    run_all()
    page = client.post(retry_url(run.id)).json()
    assert page["status"] == "pending" and page["cancel_requested"] is False
    worker.run_once()
    assert run.refresh().status == RunStatus.WAITING  # back in its sleep


@pytest.mark.parametrize("finish", [True, False])
def test_retry_a_run_that_is_not_failed_or_cancelled_is_409_not_retryable(
    client, ada, worker, finish
):
    run = wf.add.using(owner=ada).start(1, 2)
    if finish:
        run_all()
    response = client.post(retry_url(run.id))
    assert response.status_code == 409
    assert response.json()["code"] == "not_retryable"
    assert "only failed or cancelled runs can be retried" in response.json()["detail"]
    assert run.refresh().model.attempt == 1


def test_seeing_a_run_is_not_enough_to_cancel_or_retry_it(worker):
    owner = make_user("ada")
    sleeping = wf.cleanup.using(owner=owner).start()
    failed = wf.boom.using(owner=owner).start()
    drain_once = [worker.run_once() for _ in range(2)]
    assert any(drain_once)
    assert failed.refresh().status == RunStatus.FAILED
    viewer = client_for(make_user("eve", "django_durable.view_run"))
    assert viewer.get(f"{BASE}/runs/{sleeping.id}/").status_code == 200
    assert viewer.post(cancel_url(sleeping.id)).status_code == 403
    assert viewer.post(retry_url(failed.id)).status_code == 403
    assert sleeping.refresh().model.cancel_requested_at is None
    assert failed.refresh().status == RunStatus.FAILED
    operator = client_for(make_user("op", "django_durable.view_run", "django_durable.operate_run"))
    assert operator.post(cancel_url(sleeping.id)).status_code == 202
    assert operator.post(retry_url(failed.id)).status_code == 202


def test_runs_others_may_not_see_cannot_be_cancelled_or_retried(client):
    other = wf.boom.using(owner=make_user("bob")).start()
    for url in (cancel_url(other.id), retry_url(other.id)):
        assert client.post(url).status_code == 404
        assert client.post(url.replace(other.id, str(uuid.uuid4()))).status_code == 404
    # An operator without view_run sees only their own runs: still 404.
    operator = client_for(make_user("op", "django_durable.operate_run"))
    assert operator.post(cancel_url(other.id)).status_code == 404
    assert other.refresh().status == RunStatus.PENDING


def test_a_run_page_lists_its_children_and_a_child_names_its_parent(client, ada, worker):
    parent = wf.parent_fanout.using(owner=ada).start(3)
    worker.run_once()
    page = client.get(f"{BASE}/runs/{parent.id}/").json()
    assert (page["parent"], page["depth"], page["parent_close"]) == (None, 0, "cancel")
    assert page["cancel_requested"] is False and page["cancel_reason"] == ""
    children = [child.id for child in parent.children()]
    assert [child["id"] for child in page["children"]] == children
    assert page["children_count"] == 3
    first = page["children"][0]
    assert set(first) == {"id", "workflow", "status", "created_at", "finished_at"}
    assert (first["workflow"], first["status"], first["finished_at"]) == (
        "tests.child_double",
        "pending",
        None,
    )
    child = client.get(f"{BASE}/runs/{children[0]}/").json()
    assert (child["parent"], child["depth"], child["children"]) == (parent.id, 1, [])
    run_all()
    done = client.get(f"{BASE}/runs/{parent.id}/").json()
    assert {c["status"] for c in done["children"]} == {"completed"}
    assert all(c["finished_at"] for c in done["children"])


def test_the_parent_filter_lists_a_runs_children(client, ada, worker):
    parent = wf.parent_fanout.using(owner=ada).start(3)
    other = wf.add.using(owner=ada).start(1, 2)
    worker.run_once()
    listed = client.get(f"{BASE}/runs/", {"parent": parent.id}).json()["results"]
    assert {run["id"] for run in listed} == {child.id for child in parent.children()}
    assert {run["parent"] for run in listed} == {parent.id}
    everything = {run["id"]: run for run in client.get(f"{BASE}/runs/").json()["results"]}
    assert everything[other.id]["parent"] is None and everything[parent.id]["parent"] is None
    assert client.get(f"{BASE}/runs/", {"parent": other.id}).json()["results"] == []
    bad = client.get(f"{BASE}/runs/", {"parent": "nope"})
    assert bad.status_code == 400 and bad.json()["code"] == "parse_error"


def test_children_are_bounded_and_the_page_query_count_does_not_grow(client, ada):
    from django.test.utils import CaptureQueriesContext

    def parent_with(count: int) -> str:
        parent = wf.parent_fanout.using(owner=ada).start(count)
        # Test set-up: children as a worker would insert them.
        Run.objects.bulk_create(
            Run(
                workflow_name="tests.child_double",
                parent_id=parent.id,
                parent_position=index,
                depth=1,
                owner=ada,
            )
            for index in range(count)
        )
        return parent.id

    few, many = parent_with(3), parent_with(250)
    client.get(f"{BASE}/runs/{few}/")  # warm up
    with CaptureQueriesContext(connection) as few_queries:
        few_page = client.get(f"{BASE}/runs/{few}/").json()
    with CaptureQueriesContext(connection) as many_queries:
        many_page = client.get(f"{BASE}/runs/{many}/").json()
    assert (len(few_page["children"]), few_page["children_count"]) == (3, 3)
    assert (len(many_page["children"]), many_page["children_count"]) == (200, 250)
    positions = [Run.objects.get(pk=c["id"]).parent_position for c in many_page["children"][:3]]
    assert positions == [0, 1, 2]  # oldest first
    assert len(many_queries) == len(few_queries) + 1  # the count, only when the list is full


def test_children_others_may_not_see_are_left_out(client, ada):
    parent = wf.parent_fanout.using(owner=ada).start(2)
    bob = make_user("bob")
    Run.objects.bulk_create(
        Run(
            workflow_name="tests.child_double",
            parent_id=parent.id,
            parent_position=index,
            depth=1,
            owner=owner,
        )
        for index, owner in enumerate([ada, bob])
    )
    page = client.get(f"{BASE}/runs/{parent.id}/").json()
    assert page["children_count"] == 1 and len(page["children"]) == 1
    assert Run.objects.get(pk=page["children"][0]["id"]).owner == ada


def test_the_schema_describes_cancel_and_retry(client):
    response = client.get(f"{BASE}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(response.content)
    for action in ("cancel", "retry"):
        operation = schema["paths"][f"/runs/{{run_id}}/{action}/"]["post"]
        assert {"202", "404", "409"} <= set(operation["responses"])
    cancel = schema["paths"]["/runs/{run_id}/cancel/"]["post"]
    assert "CancelRun" in json.dumps(cancel["requestBody"])
    detail = schema["components"]["schemas"]["RunDetail"]["properties"]
    for field in ("parent", "depth", "cancel_requested", "cancel_reason", "children"):
        assert field in detail, field
    assert detail["cancel_requested"]["type"] == "boolean"
    assert "ChildRun" in json.dumps(detail["children"])
    parameters = schema["paths"]["/runs/"]["get"]["parameters"]
    assert "parent" in {parameter["name"] for parameter in parameters}


def test_a_message_to_a_finished_run_is_409_and_not_stored(client, ada):
    run = wf.add.using(owner=ada).start(1, 2)
    run_all()
    answer = client.post(f"{BASE}/runs/{run.id}/messages/", {"message": 1}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (409, "run_finished")
    assert not Message.objects.filter(run_id=run.id).exists()
