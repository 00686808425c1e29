"""The demos app: the ``demo`` command and what scenarios share."""

from django.apps import AppConfig


class DemosConfig(AppConfig):
    """Finds each installed app's ``scenario.py`` when the ``demo`` command asks."""

    name = "example_project.demos"
    label = "demos"
