"""The test project with its durable tables in a second database, "workflows".

``DJANGO_DURABLE["DATABASE"] = "workflows"`` and ``django_durable.routers.DurableRouter``:
the tests of ``tests/multidb/`` run with these settings, in a pytest session of their own
(``tests/test_two_databases.py`` starts it). On PostgreSQL "workflows" is a second database
on the same server; on SQLite, a second file.

Worker and command subprocesses get DURABLE_TEST_DB_NAME and DURABLE_TEST_WF_DB_NAME, the
names of the two test databases the session created.
"""

import os
import tempfile

from tests.settings import *  # noqa: F403
from tests.settings import BACKEND, DATABASES, DJANGO_DURABLE

WF_DB_NAME = os.environ.get("DURABLE_TEST_WF_DB_NAME")

if BACKEND == "postgres":
    DATABASES["workflows"] = {
        **DATABASES["default"],
        "NAME": WF_DB_NAME or "durable_workflows",
        "TEST": {"NAME": f"test_durable_wf_{os.getpid()}"},
    }
else:
    DATABASES["workflows"] = {
        **DATABASES["default"],
        "NAME": WF_DB_NAME or os.path.join(tempfile.gettempdir(), "durable-dev-wf.sqlite3"),
        "TEST": {
            "NAME": os.path.join(tempfile.gettempdir(), f"durable-test-wf-{os.getpid()}.sqlite3")
        },
    }

DATABASE_ROUTERS = ["django_durable.routers.DurableRouter"]
DJANGO_DURABLE = {**DJANGO_DURABLE, "DATABASE": "workflows"}
