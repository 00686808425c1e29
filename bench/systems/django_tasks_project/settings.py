"""django-tasks-db's settings: the same database settings as django-durable's benchmark."""

import os

from bench.settings import DATABASES, DEFAULT_AUTO_FIELD, LOGGING, SECRET_KEY, USE_TZ

__all__ = ["DATABASES", "DEFAULT_AUTO_FIELD", "LOGGING", "SECRET_KEY", "USE_TZ"]

DEBUG = False
INSTALLED_APPS = ["django_tasks", "django_tasks_db"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# The workers name their sessions, so the client can see them connect.
DATABASES["default"]["OPTIONS"] = {
    "application_name": os.environ.get("BENCH_APPLICATION_NAME", "bench")
}
