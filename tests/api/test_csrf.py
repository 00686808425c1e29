"""``GET csrf/``: a browser with a Django session gets the cookie, then POSTs with it."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from django_durable.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/durable"


def test_the_cookie_and_token_let_a_session_post():
    get_user_model().objects.create_user("ada", password="pw")
    browser = APIClient(enforce_csrf_checks=True)
    assert browser.login(username="ada", password="pw")
    body = {"workflow": "tests.http_receives"}
    refused = browser.post(f"{BASE}/runs/", body, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    answer = browser.get(f"{BASE}/csrf/")
    assert answer.status_code == 200
    token = answer.json()["csrf_token"]
    assert browser.cookies["csrftoken"].value
    started = browser.post(f"{BASE}/runs/", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert started.status_code == 201
    assert Run.objects.count() == 1


def test_anonymous_browsers_get_the_cookie_too():
    answer = APIClient().get(f"{BASE}/csrf/")
    assert answer.status_code == 200 and answer.json()["csrf_token"]
