"""A row per execution of a step body: what the demo counts (which process, which attempt)."""

from django.db import models


class BodyExecution(models.Model):
    """One execution of a step body of the pyworkflow examples, by the process ``pid``.

    Written by the body itself (``notes.note``) when it starts, so it counts every
    execution: also one cut short by a killed worker, which left no checkpoint.
    """

    run_id = models.CharField(max_length=64, db_index=True)
    step = models.CharField(max_length=200)
    attempt = models.PositiveIntegerField()
    pid = models.IntegerField()
    text = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.step} of run {self.run_id}, attempt {self.attempt}, in pid {self.pid}"
