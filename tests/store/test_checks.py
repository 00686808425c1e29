"""Tests of ``django_durable/store/checks.py``: the system checks of the database."""

from __future__ import annotations

from django.core.management import call_command


def test_system_check_warns_about_sqlite_without_immediate_transactions(settings):
    from django_durable.store.checks import check_database

    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        assert check_database() == []
        options = settings.DATABASES["default"]["OPTIONS"]
        settings.DATABASES["default"]["OPTIONS"] = {}
        try:
            from django.db import connections

            connections["default"].settings_dict["OPTIONS"] = {}
            [warning] = check_database()
            assert warning.id == "django_durable.W001"
        finally:
            connections["default"].settings_dict["OPTIONS"] = options
    else:
        assert check_database() == []
    settings.DJANGO_DURABLE = {"DATABASE": "missing"}
    [error] = check_database()
    assert error.id == "django_durable.E001"


def test_manage_py_check_passes():
    call_command("check", "--fail-level", "WARNING")


def test_a_listen_database_must_be_a_database_of_the_same_kind(settings):
    from django_durable.store.checks import check_database

    settings.DJANGO_DURABLE = {"LISTEN_DATABASE": "default"}
    assert check_database() == []
    settings.DJANGO_DURABLE = {"LISTEN_DATABASE": "direct"}
    [error] = check_database()
    assert error.id == "django_durable.E005"
    assert "'direct', which is not a" in error.msg


def test_the_router_check_is_quiet_for_default_and_leaves_a_missing_alias_to_e001(settings):
    # The warning itself, with a real second database: tests/multidb/test_setup.py.
    from django_durable.store.checks import check_router

    assert check_router() == []
    settings.DJANGO_DURABLE = {"DATABASE": "missing"}
    assert check_router() == []
