"""``DurableRouter``: django-durable's models to DJANGO_DURABLE["DATABASE"], no others there."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import override_settings

from django_durable.models import Run
from django_durable.routers import DurableRouter
from tests.testapp.models import SideEffect

router = DurableRouter()


def test_with_the_default_database_it_routes_durable_models_there_and_leaves_others_alone():
    assert router.db_for_read(Run) == router.db_for_write(Run) == "default"
    assert router.db_for_read(User) is None and router.db_for_write(SideEffect) is None
    assert router.allow_migrate("default", "django_durable") is True
    assert router.allow_migrate("default", "auth") is None  # the other routers decide


@override_settings(DJANGO_DURABLE={"DATABASE": "workflows"})
def test_with_a_database_of_its_own_only_durable_tables_go_there():
    assert router.db_for_read(Run) == router.db_for_write(Run) == "workflows"
    assert router.allow_migrate("workflows", "django_durable", model_name="run") is True
    assert router.allow_migrate("default", "django_durable", model_name="run") is False
    assert router.allow_migrate("workflows", "auth", model_name="user") is False
    assert router.allow_migrate("default", "auth", model_name="user") is None
    assert router.allow_migrate("other", "testapp") is None


@override_settings(DJANGO_DURABLE={"DATABASE": "workflows"})
def test_a_runs_owner_is_read_where_users_are_and_the_relation_is_allowed():
    run, user = Run(), User()
    run._state.db, user._state.db = "workflows", "default"
    assert router.db_for_read(User, instance=run) == "default"  # not the run's database
    assert router.allow_relation(run, user) is True
    assert router.allow_relation(user, run) is True
    assert router.allow_relation(run, Run()) is True
    assert router.allow_relation(run, SideEffect()) is None
    assert router.allow_relation(user, SideEffect()) is None
