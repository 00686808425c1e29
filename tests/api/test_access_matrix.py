"""Who may do what over HTTP: every endpoint against every kind of caller, in one table.

Each row is a caller, each column an endpoint; a cell is the status the API must answer (and,
for a refused token, the error code that says why). Anything else is a bug in the access
rules, whichever way it goes.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

import django_durable as durable
from django_durable.models import Event, Message, Run, RunStatus, RunToken, RunValue

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"
ENDPOINTS = ("list", "start", "detail", "send", "value", "stream", "sse", "cancel", "retry", "emit")
ENDPOINTS += ("fork",)

# Statuses, endpoint by endpoint, in the order of ENDPOINTS. "n": token not accepted here,
# "g": not granted, "x": expired, "r": revoked (all 401, told apart by their error code).
MATRIX = {
    # DRF answers 403 when the project's first authentication class (here the session's)
    # names no WWW-Authenticate scheme; the code says why.
    "anonymous": (403, 403, 403, 403, 403, 403, 403, 403, 403, 403, 403),
    "other user": (200, 201, 404, 404, 404, 404, 404, 404, 404, 403, 404),
    # Owning a run does not allow forking it: that needs fork_run.
    "owner": (200, 201, 200, 202, 200, 200, 200, 202, 202, 403, 403),
    "staff, no permission": (200, 201, 404, 404, 404, 404, 404, 404, 404, 403, 404),
    "staff, view_run": (200, 201, 200, 403, 200, 200, 200, 403, 403, 403, 403),
    "staff, operate_run": (200, 201, 404, 404, 404, 404, 404, 404, 404, 403, 404),
    "staff, view_run + operate_run": (200, 201, 200, 202, 200, 200, 200, 202, 202, 403, 403),
    "staff, view_run + fork_run": (200, 201, 200, 403, 200, 200, 200, 403, 403, 403, 201),
    "staff, fork_run": (200, 201, 404, 404, 404, 404, 404, 404, 404, 403, 404),
    "staff, add_event": (200, 201, 404, 404, 404, 404, 404, 404, 404, 202, 404),
    "token: read": ("n", "n", 200, "g", 200, "g", "g", "n", "n", "n", "n"),
    "token: stream": ("n", "n", "g", "g", "g", 200, 200, "n", "n", "n", "n"),
    "token: send": ("n", "n", "g", 202, "g", "g", "g", "n", "n", "n", "n"),
    "token: expired": ("n", "n", "x", "x", "x", "x", "x", "n", "n", "n", "n"),
    "token: revoked": ("n", "n", "r", "r", "r", "r", "r", "n", "n", "n", "n"),
    "token of another run": ("n", "n", 404, 404, 404, 404, 404, "n", "n", "n", "n"),
}
CODES = {"n": "token_not_accepted", "g": "token_not_granted", "x": "token_expired"}
CODES["r"] = "token_revoked"
PERMISSIONS = {
    "view_run": "django_durable.view_run",
    "operate_run": "django_durable.operate_run",
    "add_event": "django_durable.add_event",
    "fork_run": "django_durable.fork_run",
}


def user(name: str, *perms: str, staff: bool = False):
    made = get_user_model().objects.create_user(name, is_staff=staff)  # no password: fast
    for perm in perms:
        app, codename = PERMISSIONS[perm].split(".")
        made.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    return get_user_model().objects.get(pk=made.pk)


def caller(kind: str, run: Run, owner) -> tuple[APIClient, str | None]:
    """Return a client acting as ``kind``, and the token it carries (if it is one)."""
    api = APIClient()
    if kind == "owner":
        api.force_authenticate(owner)
    elif kind == "other user":
        api.force_authenticate(user("mallory"))
    elif kind.startswith("staff"):
        perms = [p for p in PERMISSIONS if p in kind]
        api.force_authenticate(user("staffer", *perms, staff=True))
    if not kind.startswith("token"):
        return api, None
    handle = durable.get_run(run.pk)
    if kind == "token of another run":
        return api, durable.get_run(Run.objects.create(workflow_name="tests.add").pk).create_token()
    ability = kind.removeprefix("token: ")
    abilities = [ability] if ability in ("read", "stream", "send") else ["read", "stream", "send"]
    token = handle.create_token(abilities=abilities)
    if ability == "expired":
        RunToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    if ability == "revoked":
        durable.revoke_tokens(run.pk)
    return api, token


def call(api: APIClient, endpoint: str, run: Run, token: str | None):
    """Make the endpoint's request; a token goes in the header (``?token=`` for SSE)."""
    headers = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    url = f"{BASE}/runs/{run.pk}"
    if endpoint == "list":
        return api.get(f"{BASE}/runs/", **headers)
    if endpoint == "start":
        body = {"workflow": "tests.http_receives"}
        return api.post(f"{BASE}/runs/", body, format="json", **headers)
    if endpoint == "detail":
        return api.get(f"{url}/", **headers)
    if endpoint == "send":
        body = {"message": "yes", "topic": "approval"}
        return api.post(f"{url}/messages/", body, format="json", **headers)
    if endpoint == "value":
        return api.get(f"{url}/values/progress/", **headers)
    if endpoint == "stream":
        return api.get(f"{url}/streams/log/", **headers)
    if endpoint == "sse":
        query = "" if token is None else f"?token={token}"
        return api.get(f"{url}/streams/log/{query}", HTTP_ACCEPT="text/event-stream")
    if endpoint == "cancel":
        return api.post(f"{url}/cancel/", {}, format="json", **headers)
    if endpoint == "retry":
        Run.objects.filter(pk=run.pk).update(status=RunStatus.FAILED)
        return api.post(f"{url}/retry/", **headers)
    if endpoint == "fork":
        Run.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
        return api.post(f"{url}/fork/", {"from_step": 0}, format="json", **headers)
    return api.post(f"{BASE}/events/", {"name": "matrix/event"}, format="json", **headers)


@pytest.fixture
def scene(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "API_STREAM_SECONDS": 0.2}
    owner = user("olive")
    run = Run.objects.create(workflow_name="tests.http_receives", owner=owner)
    RunValue.objects.create(run=run, key="progress", value={"done": 0}, position=0)
    return run, owner


CASES = [
    pytest.param(kind, endpoint, expected, id=f"{kind} / {endpoint}")
    for kind, row in MATRIX.items()
    for endpoint, expected in zip(ENDPOINTS, row, strict=True)
]


@pytest.mark.parametrize(("kind", "endpoint", "expected"), CASES)
def test_access(scene, kind, endpoint, expected):
    run, owner = scene
    api, token = caller(kind, run, owner)
    before = (Run.objects.count(), Message.objects.count(), Event.objects.count())
    response = call(api, endpoint, run, token)
    if response.get("Content-Type", "").startswith("text/event-stream"):
        b"".join(response.streaming_content)  # let it end (API_STREAM_SECONDS)
    status = expected if isinstance(expected, int) else 401
    assert response.status_code == status, getattr(response, "data", response)
    if kind == "anonymous":
        assert response.json()["code"] == "not_authenticated"
    if isinstance(expected, str):
        assert response.json()["code"] == CODES[expected]
        assert response["WWW-Authenticate"].startswith("Bearer")
    if status >= 400:  # a refused request stores nothing and changes nothing
        after = (Run.objects.count(), Message.objects.count(), Event.objects.count())
        assert after == before
        if endpoint == "cancel":
            assert Run.objects.get(pk=run.pk).cancel_requested_at is None


def test_the_matrix_covers_every_endpoint_of_the_api():
    from django.urls import get_resolver

    names = {
        pattern.name
        for pattern in get_resolver("django_durable.api.urls").url_patterns
        if pattern.name
        # No run, no login: tested on their own.
        and pattern.name not in ("schema", "webhook", "csrf", "callback", "callback-fail")
    }
    covered = {"runs", "run", "run-messages", "run-value", "run-stream", "run-cancel"}
    covered |= {"run-retry", "events", "run-fork"}
    assert names == covered
