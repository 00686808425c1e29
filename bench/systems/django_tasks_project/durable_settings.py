"""django-tasks on django-durable: the same task module, run by DurableBackend.

The same database settings as django-durable's benchmark; the task is django-tasks-db's
(``tasks.py`` of this package, found by the backend's autodiscovery of apps' ``tasks``
modules, so this package is an installed app here).
"""

from bench.settings import (
    DATABASES,
    DEFAULT_AUTO_FIELD,
    DJANGO_DURABLE,
    LOGGING,
    SECRET_KEY,
    USE_TZ,
)

__all__ = ["DATABASES", "DEFAULT_AUTO_FIELD", "DJANGO_DURABLE", "LOGGING", "SECRET_KEY", "USE_TZ"]

DEBUG = False
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_durable",
    "bench.systems.django_tasks_project",
]
TASKS = {"default": {"BACKEND": "django_durable.tasks.DurableBackend"}}
