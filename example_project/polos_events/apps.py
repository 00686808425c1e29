"""The polos_events example app: workflows in ``workflows.py``, its demo in ``scenario.py``."""

from django.apps import AppConfig


class PolosEventsConfig(AppConfig):
    name = "example_project.polos_events"
    label = "polos_events"
