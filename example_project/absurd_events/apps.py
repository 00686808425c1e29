"""The absurd_events example app: workflows in ``workflows.py``, its demo in ``scenario.py``."""

from django.apps import AppConfig


class AbsurdEventsConfig(AppConfig):
    name = "example_project.absurd_events"
    label = "absurd_events"
