"""The test project under ASGI, as a project would serve it: bodies limited before Django."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
# Requests close their database connections, as Django advises under ASGI: persistent ones
# pile up (tests/api/test_serving_asgi.py measures it, and sets 60 to do so).
os.environ.setdefault("DURABLE_TEST_CONN_MAX_AGE", "0")

from django_durable.api.asgi import LimitBodies

application = LimitBodies(get_asgi_application(), prefix="/durable/")
