"""After migrate: django-durable's tables in "workflows" only, everything else in "default"."""

from __future__ import annotations

from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connections, router

from django_durable.models import Run, Schedule, Step
from tests.testapp.models import SideEffect


def tables(alias: str) -> set[str]:
    return set(connections[alias].introspection.table_names())


def test_the_durable_tables_are_in_workflows_and_not_in_default():
    durable = {model._meta.db_table for model in (Run, Step, Schedule)}
    assert durable <= tables("workflows")
    assert not {table for table in tables("default") if table.startswith("durable_")}
    # Nothing else in the durable database: the router keeps the other apps out.
    assert {table for table in tables("workflows") if not table.startswith("durable_")} == {
        "django_migrations"
    }
    assert {User._meta.db_table, SideEffect._meta.db_table} <= tables("default")


def test_the_permissions_of_the_durable_models_are_in_default():
    # post_migrate creates them where auth's tables are; the admin and the API check them.
    operate = Permission.objects.get(
        content_type__app_label="django_durable", codename="operate_run"
    )
    assert operate.name == "Can operate runs that others own (send, cancel, retry)"


def test_the_router_sends_durable_models_to_workflows_and_others_where_they_were():
    assert (router.db_for_read(Run), router.db_for_write(Step)) == ("workflows", "workflows")
    assert (router.db_for_read(User), router.db_for_write(SideEffect)) == ("default", "default")
    assert Run.objects.db == "workflows"
    # A run's owner is read from the users' database, not from the run's.
    run = Run(workflow_name="tests.add")
    run._state.db = "workflows"
    assert router.db_for_read(User, instance=run) == "default"


def test_migrate_again_changes_nothing_in_either_database():
    for alias in ("default", "workflows"):
        call_command("migrate", database=alias, check_unapplied=True, verbosity=0)


def test_the_system_checks_pass_with_the_router(settings):
    call_command("check", fail_level="WARNING", verbosity=0)
    settings.DATABASE_ROUTERS = []
    from django_durable.store.checks import check_router

    [warning] = check_router()
    assert warning.id == "django_durable.W002"
    assert "DurableRouter" in warning.hint
