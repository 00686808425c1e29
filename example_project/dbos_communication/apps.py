"""The dbos_communication example app: workflows in ``workflows.py``, demos in ``scenario.py``."""

from django.apps import AppConfig


class DbosCommunicationConfig(AppConfig):
    name = "example_project.dbos_communication"
    label = "dbos_communication"
