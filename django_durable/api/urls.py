"""Mount with ``path("durable/", include("django_durable.api.urls"))``."""

from django.urls import path, re_path

from .callbacks import CallbackFailView, CallbackView
from .channels import RunMessagesView, RunValueView
from .csrf import CsrfView
from .events import EventsView
from .runs import NoSuchRunView, RunCancelView, RunForkView, RunRetryView, RunsView, RunView
from .schema import SchemaView
from .sse import RunStreamView
from .webhooks import WebhookView

app_name = "django_durable"

urlpatterns = [
    path("runs/", RunsView.as_view(), name="runs"),
    path("runs/<str:run_id>/", RunView.as_view(), name="run"),
    path("runs/<str:run_id>/messages/", RunMessagesView.as_view(), name="run-messages"),
    path("runs/<str:run_id>/cancel/", RunCancelView.as_view(), name="run-cancel"),
    path("runs/<str:run_id>/retry/", RunRetryView.as_view(), name="run-retry"),
    path("runs/<str:run_id>/fork/", RunForkView.as_view(), name="run-fork"),
    path("runs/<str:run_id>/values/<path:key>/", RunValueView.as_view(), name="run-value"),
    path("runs/<str:run_id>/streams/<path:key>/", RunStreamView.as_view(), name="run-stream"),
    path("events/", EventsView.as_view(), name="events"),
    path("webhooks/<str:source>/", WebhookView.as_view(), name="webhook"),
    path("callbacks/<str:token>/", CallbackView.as_view(), name="callback"),
    path("callbacks/<str:token>/fail/", CallbackFailView.as_view(), name="callback-fail"),
    path("csrf/", CsrfView.as_view(), name="csrf"),
    path("schema/", SchemaView.as_view(), name="schema"),
    # Anything else under runs/ (an id with a slash, a path that is not ours): the JSON 404
    # of a run that does not exist, not Django's HTML page.
    re_path(r"^runs/.", NoSuchRunView.as_view()),
]
