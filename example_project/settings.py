"""Settings of the example project.

SQLite in ``example_project/db.sqlite3`` by default (``DURABLE_EXAMPLE_SQLITE`` names
another file); PostgreSQL when ``DATABASE_URL=postgres://user:pass@host:port/name`` is set.
Not for production: the secret key is public and DEBUG is on.
"""

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "django-insecure-example-project-only"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_durable",
    "example_project.demos",
    "example_project.shop",
    # One app per seed document the product was derived from (../shared/seeds/).
    "example_project.absurd_events",
    "example_project.polos_events",
    "example_project.dbos_communication",
    "example_project.edda_events",
    "example_project.pyworkflow_examples",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def postgres_from_url(url: str, *, conn_max_age: int = 60) -> dict[str, Any]:
    """Return a PostgreSQL ``DATABASES`` entry for ``postgres://user:pass@host:port/name``.

    Query parameters (``?sslmode=require``) become connection options.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must start with postgres:// or postgresql://, not {url!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
        # Workers keep their connection between polls; health checks drop dead ones.
        "CONN_MAX_AGE": conn_max_age,
        "CONN_HEALTH_CHECKS": True,
    }


def sqlite_at(path: str) -> dict[str, Any]:
    """Return an SQLite ``DATABASES`` entry that several worker processes can share."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            # Take the write lock when a transaction begins, so that concurrent writers
            # queue up instead of failing with "database is locked" half-way through.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            # WAL lets the demo and the workers read while one of them writes.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


# Set by asgi.py. Under ASGI each request does its database work in a thread of its own,
# which ends with the request: a connection kept for reuse (CONN_MAX_AGE > 0) would stay
# open, unused, until the garbage collector happened to close it. So the web server closes
# its connections after each request, as Django advises for ASGI; workers keep theirs.
SERVING_ASGI = os.environ.get("DURABLE_EXAMPLE_SERVER") == "asgi"

if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": postgres_from_url(
            os.environ["DATABASE_URL"], conn_max_age=0 if SERVING_ASGI else 60
        )
    }
else:
    default_sqlite = str(BASE_DIR / "example_project" / "db.sqlite3")
    DATABASES = {"default": sqlite_at(os.environ.get("DURABLE_EXAMPLE_SQLITE", default_sqlite))}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"

# The API's writes are throttled per user (per address for anonymous callers and pages with
# a run's access token): starting runs, messages to runs, events, and signed webhooks.
REST_FRAMEWORK = {
    "DEFAULT_THROTTLE_RATES": {
        "durable_start": "30/min",
        "durable_send": "60/min",
        "durable_emit": "60/min",
        "durable_webhook": "600/min",
    }
}

# The scenarios' timers run this many times faster than real time: a day takes 2 seconds
# (example_project/demos/timing.py). DURABLE_EXAMPLE_TIME_SCALE=1 runs them in real time.
EXAMPLE_TIME_SCALE = float(os.environ.get("DURABLE_EXAMPLE_TIME_SCALE", 1 / 43_200))

DJANGO_DURABLE = {
    # Workers look for due runs this often; short, so that the demo moves briskly.
    "POLL_INTERVAL": 0.2,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [pid %(process)d]: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "INFO"}},
}
