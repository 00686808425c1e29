"""URLs of the example project: the admin shows orders, step logs and workflow runs."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # The HTTP API: runs, progress, messages, streams (SSE), events, OpenAPI at durable/schema/.
    path("durable/", include("django_durable.api.urls")),
]
