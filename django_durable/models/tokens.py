"""Per-run access tokens: what a frontend without a Django login may do with one run."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .runs import Run


class RunToken(models.Model):
    """A token that lets its bearer read, follow or message one run over HTTP.

    The token itself is never stored: ``selector`` finds the row, and ``digest`` is the
    SHA-256 of its secret part, compared in constant time. It ends when it expires or is
    revoked, and with its run (the row is deleted with it).
    """

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tokens")
    # The public half of the token, to find the row: 16 hex characters.
    selector = models.CharField(max_length=16, unique=True)
    # SHA-256 (hex) of the secret half.
    digest = models.CharField(max_length=64)
    # What it allows: a list of "read", "stream", "send".
    abilities = models.JSONField(default=list)
    # Whether it also reaches the runs this run started (and theirs).
    include_children = models.BooleanField(default=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "durable_run_token"
        ordering = ("-id",)
        verbose_name = _("run access token")

    def __str__(self) -> str:
        return f"token {self.selector} of {self.run_id}"
