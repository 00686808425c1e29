"""The worker processes admin: which workers run, and which stopped or vanished."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .. import display
from ..models import WorkerProcess
from ..models.workers import alive_q


class AliveFilter(admin.SimpleListFilter):
    """Workers running now, or stopped and lost ones."""

    title = _("alive")
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        alive = alive_q()
        if self.value() == "yes":
            return queryset.filter(alive)
        if self.value() == "no":
            return queryset.exclude(alive)
        return queryset


@admin.register(WorkerProcess)
class WorkerProcessAdmin(admin.ModelAdmin):
    """``run_workflow_worker`` processes, as they last reported themselves."""

    list_display = (
        "id",
        "hostname",
        "pid",
        "queue_list",
        "concurrency",
        "started_at",
        "last_seen_at",
        "stopped_at",
        "alive",
    )
    list_filter = (AliveFilter,)
    search_fields = ("hostname", "=id")
    ordering = ("-started_at",)
    readonly_fields = (
        "id",
        "hostname",
        "pid",
        "queue_list",
        "workflow_list",
        "concurrency",
        "started_at",
        "last_seen_at",
        "stopped_at",
        "alive",
    )
    fields = readonly_fields

    @admin.display(description=_("queues"))
    def queue_list(self, worker: WorkerProcess) -> str:
        return ", ".join(map(str, worker.queues or []))

    @admin.display(description=_("workflows it knows"))
    def workflow_list(self, worker: WorkerProcess) -> str:
        # It claims only runs of these: the workflows its code registered when it started.
        return ", ".join(map(str, worker.workflows or [])) or self.get_empty_value_display()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # Alive by the database's clock, which the list's query reads (not once per row).
        alive = ExpressionWrapper(alive_q(), output_field=BooleanField())
        return super().get_queryset(request).annotate(alive_now=alive)

    @admin.display(description=_("alive"), boolean=True)
    def alive(self, worker: WorkerProcess) -> bool:
        alive_now = getattr(worker, "alive_now", None)
        return display.worker_alive(worker) if alive_now is None else bool(alive_now)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
