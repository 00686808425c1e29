"""A task module no app's ``tasks`` module imports: only ``get_result`` imports it."""

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task


@task()
def ping() -> str:
    """Return "pong"."""
    return "pong"
