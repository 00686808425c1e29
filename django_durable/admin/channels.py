"""The events and messages admins."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .. import display
from ..core.conf import get_settings
from ..models import Event, Message
from .base import (
    ChoicesFromCode,
    HistoryAdmin,
    consumed_text,
    pre,
    run_link,
)


class RecentTypeFilter(ChoicesFromCode):
    """Events of one type; the choices are the types of the newest events, not a DISTINCT."""

    title = _("type")
    parameter_name = "type"
    # How many of the newest events the choices are taken from.
    RECENT = 1000

    def names(self) -> set[str]:
        events = Event.objects.using(get_settings().DATABASE)
        recent = events.order_by("-id").values_list("type", flat=True)[: self.RECENT]
        return {name for name in recent if name}


@admin.register(Event)
class EventAdmin(HistoryAdmin):
    """Emitted events, newest first; only superusers delete them."""

    list_display = ("id", "name", "source", "type", "created_at", "emitted_by")
    list_filter = (RecentTypeFilter,)
    search_fields = ("name",)  # shows the search box; get_search_results() does the search
    search_help_text = _(
        "An exact event name, the start of one followed by * (payment.*), or an event id."
    )
    ordering = ("-id",)
    list_deferred = ("data",)
    list_per_page = 100
    fields = readonly_fields = (
        "id",
        "name",
        "source",
        "type",
        "idempotency_key",
        "created_at",
        "emitted_by",
        "data_json",
    )

    @admin.display(description=_("emitted by run"))
    def emitted_by(self, event: Event) -> str:
        if event.run_id is None:
            return self.get_empty_value_display()
        return run_link(self.admin_site, event.run_id)

    @admin.display(description=_("data"))
    def data_json(self, event: Event) -> SafeString:
        return pre(display.pretty_json(event.data))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # Exact names use the (name, id) index; a LIKE with a leading % would read every row.
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.endswith("*"):
            return queryset.filter(name__startswith=term[:-1]), False
        query = Q(name=term)
        if term.isascii() and term.isdigit() and int(term) < 2**63:
            query |= Q(pk=int(term))
        return queryset.filter(query), False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


class ConsumedFilter(admin.SimpleListFilter):
    """Messages a run has taken, or still pending."""

    title = _("consumed")
    parameter_name = "consumed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Consumed")), ("no", _("Pending"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(consumed_at__isnull=self.value() == "no")
        return queryset


@admin.register(Message)
class MessageAdmin(HistoryAdmin):
    """Messages sent to runs, newest first, and whether the run has taken each."""

    list_display = ("id", "run_link", "topic_name", "created_at", "consumed")
    list_filter = (ConsumedFilter,)
    search_fields = ("=id",)  # shows the search box; get_search_results() does the search
    search_help_text = _("A run id (its messages), or a message id.")
    ordering = ("-id",)
    list_deferred = ("data",)
    list_per_page = 100
    fields = readonly_fields = (
        "id",
        "run_link",
        "topic_name",
        "idempotency_key",
        "created_at",
        "consumed",
        "data_json",
    )

    @admin.display(description=_("run"))
    def run_link(self, message: Message) -> SafeString:
        return run_link(self.admin_site, message.run_id)

    @admin.display(description=_("topic"), ordering="topic")
    def topic_name(self, message: Message) -> str:
        return message.topic or self.get_empty_value_display()

    @admin.display(description=_("consumed"))
    def consumed(self, message: Message) -> str:
        return consumed_text(message.consumed_at, message.consumed_position)

    @admin.display(description=_("message"))
    def data_json(self, message: Message) -> SafeString:
        return pre(display.pretty_json(message.data))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(run_id=uuid.UUID(term)), False
        except ValueError:
            pass
        if term.isascii() and term.isdigit() and int(term) < 2**63:
            return queryset.filter(pk=int(term)), False
        return queryset.none(), False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting a message under its run would change what the run receives
