"""Tests of ``django_durable/core/conf.py``: the DJANGO_DURABLE settings and their checks."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_durable.core.conf import get_settings


def test_settings_defaults_and_reset_on_change(settings):
    assert get_settings().POLL_INTERVAL == 0.1  # tests/settings.py
    settings.DJANGO_DURABLE = {"LEASE_SECONDS": 90}
    conf = get_settings()
    assert conf.LEASE_SECONDS == 90
    assert conf.heartbeat_interval == 30
    assert conf.POLL_INTERVAL == 1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"POLL_INTERVALL": 1}, "Unknown DJANGO_DURABLE key"),
        ({"LEASE_SECONDS": 0}, "must be greater than 0"),
        ({"HEARTBEAT_INTERVAL": 40, "LEASE_SECONDS": 30}, "between 0 and LEASE_SECONDS"),
        ({"MAX_RECOVERIES": -1}, "cannot be negative"),
        ({"MAX_CHILD_DEPTH": -1}, "MAX_CHILD_DEPTH'] must be a whole number"),
        ({"MAX_CHILD_DEPTH": 2.5}, "MAX_CHILD_DEPTH'] must be a whole number"),
        ({"DEFAULT_STEP_RETRY": 3}, "must be a dict"),
        ([1], "must be a dict"),
    ],
)
def test_bad_settings_are_improperly_configured(settings, value, message):
    settings.DJANGO_DURABLE = value
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_an_invalid_default_step_retry_fails_at_settings_load(settings):
    settings.DJANGO_DURABLE = {"DEFAULT_STEP_RETRY": {"max_attempt": 3}}
    with pytest.raises(ImproperlyConfigured, match="not a valid RetryPolicy"):
        get_settings()
    settings.DJANGO_DURABLE = {"DEFAULT_STEP_RETRY": {"max_attempts": 0}}
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        get_settings()


# --- WEBHOOKS ------------------------------------------------------------------------------

SECRET = "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1vbmU="


def test_webhooks_default_to_none_and_read_secrets_as_a_tuple(settings):
    from django_durable.core.conf import WebhookSource, webhook_source

    settings.DJANGO_DURABLE = {}
    assert get_settings().WEBHOOKS == {}
    assert webhook_source("shop") is None
    settings.DJANGO_DURABLE = {
        "WEBHOOKS": {
            "shop": {"secret": SECRET, "event": "shop/order"},
            "psp_v2.eu-1": {"secret": [SECRET, "c2Vjb25k"], "event": "psp"},
        }
    }
    assert webhook_source("shop") == WebhookSource("shop", (SECRET,), "shop/order")
    assert webhook_source("psp_v2.eu-1") == WebhookSource(
        "psp_v2.eu-1", (SECRET, "c2Vjb25k"), "psp"
    )
    assert webhook_source("nope") is None


@pytest.mark.parametrize(
    ("webhooks", "message"),
    [
        ([], r"\['WEBHOOKS'\] must be a dict of sources"),
        ({"shop": "whsec_x"}, r"\['shop'\] must be a dict with 'secret' and 'event'"),
        ({"shop": {"secret": SECRET, "event": "e", "tolerance": 60}}, "unknown keys: tolerance"),
        ({"shop": {"secret": SECRET, "evnt": "e"}}, "unknown keys: evnt"),
        ({"shop": {"event": "e"}}, r"\['shop'\] lacks 'secret'"),
        ({"shop": {"secret": SECRET}}, r"\['shop'\] lacks 'event'"),
        ({"shop": {}}, "lacks 'secret' and 'event'"),
        ({"a/b": {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({"": {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({".": {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({"..": {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({"shop shop": {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({"x" * 101: {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({1: {"secret": SECRET, "event": "e"}}, "segment of the URL path"),
        ({"shop": {"secret": 123, "event": "e"}}, "must be a string or a list of strings"),
        ({"shop": {"secret": [], "event": "e"}}, "must be a string or a list of strings"),
        ({"shop": {"secret": b"bytes", "event": "e"}}, "must be a string or a list of strings"),
        ({"shop": {"secret": "", "event": "e"}}, r"\['secret'\] must be a non-empty string"),
        ({"shop": {"secret": [SECRET, 7], "event": "e"}}, r"\['secret'\]\[1\] must be a non-empty"),
        ({"shop": {"secret": "whsec_", "event": "e"}}, "not a Standard Webhooks secret"),
        ({"shop": {"secret": "whsec_abcde", "event": "e"}}, "not a Standard Webhooks secret"),
        ({"shop": {"secret": [SECRET, "é"], "event": "e"}}, r"\[1\] is not a Standard Webhooks"),
        ({"shop": {"secret": SECRET, "event": ""}}, r"\['event'\]: An event name must be"),
        ({"shop": {"secret": SECRET, "event": "e" * 201}}, r"\['event'\]: An event name must be"),
        ({"shop": {"secret": SECRET, "event": None}}, r"\['event'\]: An event name must be"),
    ],
)
def test_bad_webhooks_are_improperly_configured(settings, webhooks, message):
    settings.DJANGO_DURABLE = {"WEBHOOKS": webhooks}
    with pytest.raises(ImproperlyConfigured, match=message):
        get_settings()


def test_a_bad_secret_is_not_shown_in_the_message(settings):
    settings.DJANGO_DURABLE = {"WEBHOOKS": {"shop": {"secret": "whsec_s3cr3", "event": "e"}}}
    with pytest.raises(ImproperlyConfigured) as raised:
        get_settings()
    assert "s3cr3" not in str(raised.value)
    assert "DJANGO_DURABLE['WEBHOOKS']['shop']['secret']" in str(raised.value)
