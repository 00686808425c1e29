"""The worker processes, as they last reported themselves."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..core import clock
from ..core.conf import get_settings


def alive_since(now: datetime | None = None) -> datetime:
    """Return the time after which a worker must have been seen to count as alive.

    Three heartbeats: a worker that missed two in a row (a long pause, a slow database) is
    still alive; one that missed three is gone. ``now`` is the database's time (read when
    not given): heartbeats are written in it, and a web host's clock may be minutes off.
    """
    if now is None:
        now = clock.database_now()
    return now - timedelta(seconds=3 * get_settings().heartbeat_interval)


def alive_q() -> Q:
    """Return the workers running now, as a filter: not stopped, heard from within three
    heartbeats of the database's time, which the query itself reads (no extra round trip)."""
    since = clock.database_time(-3 * get_settings().heartbeat_interval)
    return Q(stopped_at__isnull=True, last_seen_at__gte=since)


class WorkerProcessQuerySet(models.QuerySet["WorkerProcess"]):
    """Worker processes, filtered by state."""

    def alive(self, now: datetime | None = None) -> WorkerProcessQuerySet:
        """Return the workers running now: not stopped, heard from within three heartbeats
        of ``now`` (the database's time when not given)."""
        if now is None:
            return self.filter(alive_q())
        return self.filter(stopped_at__isnull=True, last_seen_at__gte=alive_since(now))


class WorkerProcess(models.Model):
    """A ``run_workflow_worker`` process, as it last reported itself."""

    id = models.CharField(primary_key=True, max_length=64)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    # The names of the workflows its code registers, sorted: it claims only runs of these.
    workflows = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = WorkerProcessQuerySet.as_manager()

    class Meta:
        db_table = "durable_worker"
        ordering = ("-started_at",)
        verbose_name = _("worker process")
        verbose_name_plural = _("worker processes")

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid}"

    @property
    def is_alive(self) -> bool:
        """Return whether the worker is running: not stopped, heard from within 3 heartbeats.

        Reads the database's time; for many workers, compare with one ``alive_since()``.
        """
        return self.alive_after(alive_since())

    def alive_after(self, since: datetime) -> bool:
        """Return whether the worker is not stopped and was heard from since ``since``."""
        return self.stopped_at is None and self.last_seen_at >= since
