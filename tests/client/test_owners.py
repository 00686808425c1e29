"""A run's owner: a user that may live in another database, cleared when the user is deleted."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from django_durable.models import Run
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def test_deleting_a_user_clears_the_owner_of_their_runs_and_keeps_the_runs():
    ann, bob = User.objects.create_user("ann"), User.objects.create_user("bob")
    hers = [wf.add.using(owner=ann).start(1, 2).id for _ in range(2)]
    his = wf.add.using(owner=bob).start(1, 2).id
    ann.delete()
    assert set(Run.objects.filter(pk__in=hers).values_list("owner_id", flat=True)) == {None}
    assert Run.objects.get(pk=his).owner == bob


def test_a_user_deleted_in_a_transaction_that_rolls_back_keeps_their_runs_owned():
    # One database: the owner is cleared in the deletion's own transaction.
    ann = User.objects.create_user("ann")
    run = wf.add.using(owner=ann).start(1, 2)

    def delete_then_fail() -> None:
        with transaction.atomic():
            User.objects.filter(pk=ann.pk).delete()
            raise Rollback

    with pytest.raises(Rollback):
        delete_then_fail()
    assert Run.objects.get(pk=run.id).owner == ann


def test_a_bulk_delete_of_users_clears_each_owner():
    users = [User.objects.create_user(f"user{n}") for n in range(3)]
    runs = [wf.add.using(owner=user).start(1, 2).id for user in users]
    User.objects.filter(username__startswith="user").delete()
    assert set(Run.objects.filter(pk__in=runs).values_list("owner_id", flat=True)) == {None}
