"""ASGI entry point of the example project (``uvicorn example_project.asgi:application``)."""

import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
# The settings close the web server's database connections after each request (CONN_MAX_AGE
# = 0): persistent ones would pile up under ASGI.
os.environ["DURABLE_EXAMPLE_SERVER"] = "asgi"

application = get_asgi_application()

from django_durable.api.asgi import LimitBodies  # noqa: E402  (after the settings)

# The API's body limit applies before Django reads a body (under ASGI it reads it whole).
application = LimitBodies(application, prefix="/durable/")

if settings.DEBUG:
    # The shop's CSS and script, served as runserver serves them: uvicorn serves no files.
    application = ASGIStaticFilesHandler(application)
