"""Mount with ``path("durable/", include("django_durable.api.urls"))``."""

from django.urls import path

from . import views

app_name = "django_durable"

urlpatterns = [
    path("runs/", views.RunsView.as_view(), name="runs"),
    path("runs/<uuid:run_id>/", views.RunView.as_view(), name="run"),
    path("runs/<uuid:run_id>/messages/", views.RunMessagesView.as_view(), name="run-messages"),
    path("runs/<uuid:run_id>/cancel/", views.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<uuid:run_id>/retry/", views.RunRetryView.as_view(), name="run-retry"),
    path("runs/<uuid:run_id>/values/<path:key>/", views.RunValueView.as_view(), name="run-value"),
    path(
        "runs/<uuid:run_id>/streams/<path:key>/", views.RunStreamView.as_view(), name="run-stream"
    ),
    path("events/", views.EventsView.as_view(), name="events"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
]
