import os

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # A worker process started with DURABLE_TEST_HIDDEN_WORKFLOWS="a,b" does not know
        # those workflows: as if its code were older than the code that started the runs
        # (a rolling deploy). django_durable, installed before this app, registered them.
        from django_durable.declarations.registry import unregister

        for name in filter(None, os.environ.get("DURABLE_TEST_HIDDEN_WORKFLOWS", "").split(",")):
            unregister(name)
        # A worker process started with DURABLE_TEST_RECORD_SIGNALS=1 writes a row for each
        # signal it sends (tests/observability/).
        if os.environ.get("DURABLE_TEST_RECORD_SIGNALS"):
            from . import receivers

            receivers.connect()
