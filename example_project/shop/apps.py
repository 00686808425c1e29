"""The shop app's configuration."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """The shop app; django-durable finds its workflows in ``shop/workflows.py``."""

    name = "example_project.shop"
    label = "shop"
    default_auto_field = "django.db.models.BigAutoField"
