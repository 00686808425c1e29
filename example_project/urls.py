"""URLs of the example project: the admin shows orders, step logs and workflow runs."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
