"""The edda_events example app: workflows in ``workflows.py``, its demo in ``scenario.py``."""

from django.apps import AppConfig


class EddaEventsConfig(AppConfig):
    name = "example_project.edda_events"
    label = "edda_events"
