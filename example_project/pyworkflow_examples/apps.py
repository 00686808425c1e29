"""The pyworkflow_examples example app: workflows in ``workflows/``, its demo in ``scenario.py``."""

from django.apps import AppConfig


class PyworkflowExamplesConfig(AppConfig):
    name = "example_project.pyworkflow_examples"
    label = "pyworkflow_examples"
