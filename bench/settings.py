"""Settings for benchmark runs: PostgreSQL in a database of its own, persistent connections."""

import os
from urllib.parse import urlparse

url = urlparse(
    os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/durable_bench")
)

SECRET_KEY = "bench-only"
USE_TZ = True
DEBUG = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_durable",
    "bench.benchapp",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
    }
}
DJANGO_DURABLE = {"POLL_INTERVAL": 1.0}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "WARNING"}},
}
