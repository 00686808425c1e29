"""django_durable.client.tokens: per-run access tokens, made, checked, revoked."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone

import django_durable as durable
from django_durable.client.tokens import check_token
from django_durable.models import Run, RunToken
from django_durable.testing import time_machine
from tests.conftest import ON_POSTGRES
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_token_is_random_and_only_its_hash_is_stored():
    handle = wf.add.start(1, 2)
    first, second = handle.create_token(), handle.create_token()
    assert first != second
    assert first.startswith("dur_") and len(first) > 60
    rows = list(RunToken.objects.filter(run_id=handle.id).values())
    assert len(rows) == 2
    for token in (first, second):
        secret = token.split("_", 2)[2]
        assert not any(secret in str(value) for row in rows for value in row.values())
    assert {row["selector"] for row in rows} == {first[4:20], second[4:20]}


def test_check_gives_the_run_and_abilities_it_was_made_for():
    handle = wf.add.start(1, 2)
    token = handle.create_token(abilities=["stream", "read"], expires_in=60)
    grant = check_token(token, "read")
    assert str(grant.run_id) == handle.id
    assert grant.abilities == {"read", "stream"}
    assert check_token(token, "stream").run_id == grant.run_id
    with pytest.raises(durable.TokenRefused, match="does not grant 'send'") as refused:
        check_token(token, "send")
    assert refused.value.reason == "not_granted"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "dur_",
        "dur_0123456789abcdef",
        "dur_0123456789abcdef_nope",
        "dur_short_secret",
        "Bearer whatever",
        "dur_\ud800\ud800\ud800\ud800\ud800\ud800\ud800\ud800_\ud800",
        "dur_" + "\ud800" * 16 + "_" + "a" * 43,
        "dur_" + "\x00" * 16 + "_" + "a" * 43,
        "dur_0123456789abcdef_" + "\x00" * 43,
        "dur_0123456789ABCDEF_" + "a" * 43,
    ],
)
def test_anything_else_is_an_invalid_token(text):
    wf.add.start(1, 2).create_token()
    with pytest.raises(durable.TokenRefused, match="not valid") as refused:
        check_token(text, "read")
    assert refused.value.reason == "invalid"


def test_the_right_selector_with_a_wrong_secret_is_invalid():
    token = wf.add.start(1, 2).create_token()
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    with pytest.raises(durable.TokenRefused) as refused:
        check_token(forged, "read")
    assert refused.value.reason == "invalid"


def test_an_expired_token_is_refused_as_expired():
    handle = wf.add.start(1, 2)
    token = handle.create_token(expires_in=dt.timedelta(minutes=5))
    assert check_token(token, "read")
    RunToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(durable.TokenRefused, match="expired") as refused:
        check_token(token, "read")
    assert refused.value.reason == "expired"


def test_revoking_ends_every_token_of_the_run_and_no_other():
    handle, other = wf.add.start(1, 2), wf.add.start(3, 4)
    tokens = [handle.create_token(), handle.create_token(abilities=["send"])]
    kept = other.create_token()
    assert durable.revoke_tokens(handle.id) == 2
    for token in tokens:
        with pytest.raises(durable.TokenRefused, match="revoked") as refused:
            check_token(token, "send" if token == tokens[1] else "read")
        assert refused.value.reason == "revoked"
    assert check_token(kept, "read")
    assert durable.revoke_tokens(handle.id) == 0  # already ended
    with pytest.raises(durable.RunNotFound):
        durable.revoke_tokens("00000000-0000-0000-0000-000000000000")


def test_a_token_reaches_children_only_when_it_says_so(run_tree):
    parent, child, grandchild, other = run_tree
    own = durable.get_run(parent).create_token()
    family = durable.get_run(parent).create_token(include_children=True)
    assert check_token(own, "read").reaches(parent)
    assert not check_token(own, "read").reaches(child)
    grant = check_token(family, "read")
    assert grant.reaches(child) and grant.reaches(grandchild)
    assert not grant.reaches(other)
    # A child's token never reaches up to its parent.
    childs = durable.get_run(child).create_token(abilities=["read"], include_children=True)
    assert not check_token(childs, "read").reaches(parent)


@pytest.fixture
def run_tree():
    parent, child, grandchild, other = (Run.objects.create(workflow_name="t") for _ in range(4))
    Run.objects.filter(pk=child.pk).update(parent=parent, depth=1)
    Run.objects.filter(pk=grandchild.pk).update(parent=child, depth=2)
    return parent.pk, child.pk, grandchild.pk, other.pk


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"abilities": ["read", "write"]}, r"not 'write'"),
        ({"abilities": []}, r"not nothing"),
        ({"expires_in": 0}, r"more than 0 seconds and at most 30 days"),
        ({"expires_in": dt.timedelta(days=31)}, r"at most 30 days"),
        ({"expires_in": -5}, r"expires_in= cannot be negative"),
        ({"expires_in": float("nan")}, r"expires_in= must be a number of seconds, not NaN"),
    ],
)
def test_bad_options_are_clear_errors_and_store_nothing(options, message):
    handle = wf.add.start(1, 2)
    with pytest.raises(ValueError, match=message):
        handle.create_token(**options)
    assert not RunToken.objects.exists()


def test_async_twins():
    handle = wf.add.start(1, 2)
    token = async_to_sync(handle.acreate_token)(abilities=("read",))
    assert check_token(token, "read")
    assert async_to_sync(durable.arevoke_tokens)(handle.id) == 1
    with pytest.raises(durable.TokenRefused):
        check_token(token, "read")


def test_tokens_go_with_their_run():
    handle = wf.add.start(1, 2)
    handle.create_token()
    Run.objects.filter(pk=handle.id).delete()
    assert not RunToken.objects.exists()


def test_prune_deletes_the_tokens_that_ended_long_ago():
    handle = wf.add.start(1, 2)
    live, expired, revoked, recent = (handle.create_token() for _ in range(4))
    long_ago = timezone.now() - dt.timedelta(days=3)
    RunToken.objects.filter(selector=expired[4:20]).update(expires_at=long_ago)
    RunToken.objects.filter(selector=revoked[4:20]).update(revoked_at=long_ago)
    RunToken.objects.filter(selector=recent[4:20]).update(
        expires_at=timezone.now() - dt.timedelta(minutes=5)
    )
    assert durable.prune(older_than=dt.timedelta(days=1), dry_run=True).runs == 0
    assert RunToken.objects.count() == 4  # a dry run deletes nothing
    durable.prune(older_than=dt.timedelta(days=1))
    kept = set(RunToken.objects.values_list("selector", flat=True))
    assert kept == {live[4:20], recent[4:20]}
    assert check_token(live, "read")


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite has one clock: this process's")
def test_a_token_expires_by_the_database_clock_not_a_web_hosts(monkeypatch):
    # Made on one web host, checked on another whose clock runs two hours ahead: the
    # database's clock, shared by both, says it has most of its hour left.
    handle = wf.counted.start(1)
    token = handle.create_token(expires_in=dt.timedelta(hours=1))
    skewed = timezone.now() + dt.timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: skewed)
    assert check_token(token, "read").run_id == uuid.UUID(handle.id)
    monkeypatch.undo()
    # And it does end: an hour and a minute later by the test clock.
    with time_machine() as machine:
        machine.skip(3660)
        with pytest.raises(durable.TokenRefused, match="expired"):
            check_token(token, "read")
