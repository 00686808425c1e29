"""URLs of the example project: the shop's pages, the admin, and the HTTP API."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

urlpatterns = [
    # A shopper's pages, without a login: place an order, follow it live.
    path("shop/", include("example_project.shop.urls")),
    path("admin/", admin.site.urls),
    # The HTTP API: runs, progress, messages, streams (SSE), events, OpenAPI at durable/schema/.
    path("durable/", include("django_durable.api.urls")),
]
# The admin's styles and scripts under any server while DEBUG is on (uvicorn as well as
# runserver); empty when DEBUG is off, where the web server serves collectstatic's output.
urlpatterns += staticfiles_urlpatterns()
