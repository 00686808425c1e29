"""Settings of the test project: SQLite by default, PostgreSQL with DURABLE_TEST_DB=postgres.

Worker subprocesses started by the tests get DURABLE_TEST_DB_NAME, the name of the test
database the test process created, so that they work on the same data.
"""

import json
import os
import tempfile

BACKEND = os.environ.get("DURABLE_TEST_DB", "sqlite")
DB_NAME = os.environ.get("DURABLE_TEST_DB_NAME")

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
# Live servers the tests start (uvicorn, runserver) answer these names.
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if BACKEND == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DB_NAME or "durable",
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            # Servers started from tests/asgi.py get 0, as a project served by ASGI should.
            "CONN_MAX_AGE": int(os.environ.get("DURABLE_TEST_CONN_MAX_AGE", "60")),
            "CONN_HEALTH_CHECKS": True,
            # Per process, so that several test runs can share one server.
            "TEST": {"NAME": f"test_durable_{os.getpid()}"},
        }
    }
    # Workers behind PgBouncer (tests/reliability/test_pgbouncer.py) get PGPORT of the pooler
    # and this port of the server itself, for the LISTEN connection.
    if os.environ.get("DURABLE_TEST_DIRECT_PGPORT"):
        DATABASES["direct"] = {
            **DATABASES["default"],
            "PORT": os.environ["DURABLE_TEST_DIRECT_PGPORT"],
            "TEST": {"MIRROR": "default"},
        }
elif BACKEND == "sqlite":
    TEST_FILE = os.path.join(tempfile.gettempdir(), f"durable-test-{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DB_NAME or os.path.join(tempfile.gettempdir(), "durable-dev.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not memory: worker subprocesses open the same database.
            "TEST": {"NAME": TEST_FILE},
        }
    }
else:
    raise RuntimeError(f"DURABLE_TEST_DB must be 'sqlite' or 'postgres', not {BACKEND!r}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_durable",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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

STATIC_URL = "/static/"

DJANGO_DURABLE = {
    "POLL_INTERVAL": 0.1,
    "LEASE_SECONDS": 10,
    # A test overrides it in one worker to lose every notification on purpose.
    "NOTIFY_CHANNEL": os.environ.get("DURABLE_TEST_NOTIFY_CHANNEL", "django_durable"),
    "QUEUES": {"single": {"concurrency": 1}, "rated": {"rate_limit": "2/s"}},
    # tests/api/test_webhooks.py: one secret, and two (a rotation in progress).
    "WEBHOOKS": {
        "shop": {"secret": "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1vbmU=", "event": "shop/order"},
        "rotating": {
            "secret": [
                "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1vbGQ=",
                "whsec_dGVzdHMtb25seS13ZWJob29rLXNlY3JldC1uZXc=",
            ],
            "event": "shop/rotated",
        },
    },
}
# Worker subprocesses of the reliability tests get settings of their own through the
# environment, e.g. DURABLE_TEST_SETTINGS='{"MAX_RECOVERIES": 2}'.
DJANGO_DURABLE.update(json.loads(os.environ.get("DURABLE_TEST_SETTINGS") or "{}"))

# A worker process whose clock is off by DURABLE_TEST_CLOCK_SKEW seconds (tests/skewed_clock.py).
if os.environ.get("DURABLE_TEST_CLOCK_SKEW"):
    from tests import skewed_clock

    skewed_clock.install(float(os.environ["DURABLE_TEST_CLOCK_SKEW"]))

# Django Tasks (tests/tasks/): the tasks of tests/testapp/tasks.py run as durable runs.
TASKS = {
    "default": {
        "BACKEND": "django_durable.tasks.DurableBackend",
        "QUEUES": ["default", "emails"],
    },
    "retrying": {
        "BACKEND": "django_durable.tasks.DurableBackend",
        "OPTIONS": {"RETRY": {"max_attempts": 3, "initial_delay": 0, "jitter": 0}},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_durable": {"handlers": ["console"], "level": "INFO"}},
}
