"""W2's task: trivial, so the backend's cost is what is measured."""

from django_tasks import task


@task()
def noop(index: int = 1) -> int:
    """Return ``index``."""
    return index
