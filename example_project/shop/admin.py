"""The shop's models in the admin, to look at after ``manage.py demo``."""

from django.contrib import admin

from .models import Order, StepLog


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Orders with their fulfilment status and tracking number."""

    list_display = ("id", "customer", "amount", "status", "tracking", "created_at")
    list_filter = ("status",)


@admin.register(StepLog)
class StepLogAdmin(admin.ModelAdmin):
    """Every execution of a step body, with the process that ran it."""

    list_display = ("run_id", "step", "pid", "created_at")
    list_filter = ("step",)
    search_fields = ("run_id",)
