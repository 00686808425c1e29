"""The schedules admin: add and change cron schedules; those declared in code only pause.

Saving goes through the model: ``Schedule.clean()`` checks the cron expression, the time
zone and the workflow, and ``Schedule.save()`` computes the next tick. No action edits
rows by hand.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..core.conf import get_settings
from ..models import Schedule

# The fields people edit on a schedule they made; a schedule declared in code has only
# ``enabled`` editable.
EDITABLE = ("name", "workflow_name", "cron", "time_zone", "missed_ticks", "args", "kwargs")
TICKS = ("next_tick_at", "last_tick_at", "from_code", "created_at", "updated_at")
CODE_NOTE = _(
    "Declared in code with @durable.workflow(schedule=...): the code owns this schedule "
    "and every worker that starts puts the decorator's values back. Only “enabled” can be "
    "changed here, to pause it; change the rest in the code."
)
HELP = {
    "cron": _(
        "Five fields: minute hour day-of-month month day-of-week, as in crontab "
        "(“*/15 * * * *”, “0 3 * * 1-5”), or @hourly, @daily, @weekly, @monthly, @yearly."
    ),
    "time_zone": _(
        "The IANA time zone the cron expression is read in (“UTC”, “Europe/Paris”). "
        "Daylight saving time is followed."
    ),
    "args": _("A JSON array of positional arguments."),
    "kwargs": _(
        "A JSON object of keyword arguments. The workflow also receives scheduled_time=, "
        "the tick of the run."
    ),
}


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    """Cron schedules; those made here are edited here, those in code only paused."""

    list_display = (
        "name",
        "workflow_name",
        "cron",
        "time_zone",
        "enabled",
        "missed_ticks",
        "next_tick_at",
        "last_tick_at",
        "from_code",
    )
    list_filter = ("enabled", "from_code")
    search_fields = ("name", "workflow_name")
    ordering = ("name",)
    # No bulk actions: deleting a schedule declared in code would only bring it back.
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The durable tables live in DJANGO_DURABLE['DATABASE'], which need not be "default".
        return super().get_queryset(request).using(get_settings().DATABASE)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.from_code:
            return [
                (None, {"fields": ("enabled", *EDITABLE), "description": CODE_NOTE}),
                (_("Ticks"), {"fields": TICKS}),
            ]
        return [
            (None, {"fields": (*EDITABLE[:2], "enabled", *EDITABLE[2:])}),
            (_("Ticks"), {"fields": TICKS}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and obj.from_code:
            return (*EDITABLE, *TICKS)
        return TICKS

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs.setdefault("help_texts", {**HELP, "enabled": _("Unticked: no runs start.")})
        return super().get_form(request, obj, change, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: Any, form: ModelForm[Any], change: bool
    ) -> None:
        # Only what the form changed: a worker may have moved the ticks on meanwhile.
        fields = form.changed_data if change else None
        obj.save(using=get_settings().DATABASE, update_fields=fields)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj.delete(using=get_settings().DATABASE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.from_code:
            return False  # remove the decorator's schedule= instead
        return super().has_delete_permission(request, obj)
