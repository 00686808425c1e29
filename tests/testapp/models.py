"""Rows the test workflows write, so tests can count what really ran, across processes."""

from django.db import models


class Execution(models.Model):
    """One execution of a step body (written outside the checkpoint: counts every try)."""

    run_id = models.CharField(max_length=64)
    label = models.CharField(max_length=100)
    pid = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.label} of {self.run_id} in {self.pid}"


class SideEffect(models.Model):
    """An ORM write made by an atomic step: must exist exactly once per step."""

    run_id = models.CharField(max_length=64)
    label = models.CharField(max_length=100)

    def __str__(self) -> str:
        return f"{self.label} of {self.run_id}"
