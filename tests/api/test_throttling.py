"""Throttle scopes of the API's writes: durable_start, durable_send, durable_emit."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import cache
from rest_framework.test import APIClient

from django_durable.models import Event, Message, Run
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"


@pytest.fixture
def api():
    cache.clear()  # DRF keeps its counts in the default cache
    user = get_user_model().objects.create_user("thrifty")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="django_durable", codename="add_event")
    )
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(pk=user.pk))
    yield client
    cache.clear()


def rates(settings, **scopes: str) -> None:
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": scopes}


def test_starting_is_throttled_by_its_own_scope_and_reading_is_not(api, settings):
    rates(settings, durable_start="2/min")
    body = {"workflow": "tests.http_receives"}
    answers = [api.post(f"{BASE}/runs/", body, format="json") for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["code"] == "throttled"
    assert int(answers[2]["Retry-After"]) > 0
    assert Run.objects.count() == 2
    assert all(api.get(f"{BASE}/runs/").status_code == 200 for _ in range(5))


def test_sending_and_emitting_have_scopes_of_their_own(api, settings):
    rates(settings, durable_send="1/min", durable_emit="1/min")
    run = wf.http_receives.using(owner=get_user_model().objects.get()).start()
    send = f"{BASE}/runs/{run.id}/messages/"
    assert api.post(send, {"message": 1}, format="json").status_code == 202
    assert api.post(send, {"message": 2}, format="json").status_code == 429
    assert api.post(f"{BASE}/events/", {"name": "a"}, format="json").status_code == 202
    assert api.post(f"{BASE}/events/", {"name": "b"}, format="json").status_code == 429
    assert (Message.objects.count(), Event.objects.count()) == (1, 1)
    # The start scope has no rate: not limited.
    body = {"workflow": "tests.http_receives"}
    assert all(api.post(f"{BASE}/runs/", body, format="json").status_code == 201 for _ in range(3))


@pytest.mark.parametrize("configured", [None, {}, {"anon": "1/min"}])
def test_a_scope_without_a_rate_is_not_limited(api, settings, configured):
    if configured is None:
        settings.REST_FRAMEWORK = {}
    else:
        rates(settings, **configured)
    body = {"workflow": "tests.http_receives"}
    assert all(api.post(f"{BASE}/runs/", body, format="json").status_code == 201 for _ in range(4))
