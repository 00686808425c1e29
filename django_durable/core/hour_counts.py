"""The admin dashboard's counts of whole past hours, kept in Django's default cache.

The dashboard counts the runs started, completed and failed in the last 24 hours. Of
those hours, all but the newest two are over: the runs created in them, and those that
finished in them, do not change, except when an old run is made pending again (a retry
of a failed or cancelled run) or deleted (prune, the admin). So the dashboard reads each
whole hour once, keeps its counts for ``SECONDS``, and reads only the rest of the day on
each page. Those writes call ``changed()``: counts kept before it are not read again. With
a cache each process keeps for itself (Django's default, ``LocMemCache``), a change made
in another process (a prune run from the command line) shows within ``SECONDS``.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger("django_durable")

SECONDS = 300  # how long the counts of a whole hour are kept
_PREFIX = "django_durable:hour_counts"


def _generation_key(alias: str) -> str:
    return f"{_PREFIX}:{alias}:generation"


def key(alias: str, generation: int, hour_epoch: int) -> str:
    """Return the cache key of one hour's counts (the hour as seconds since the epoch)."""
    return f"{_PREFIX}:{alias}:{generation}:{hour_epoch}"


def generation(alias: str) -> int:
    """Return the current generation of the counts of ``alias``'s runs."""
    try:
        return int(cache.get(_generation_key(alias)) or 0)
    except Exception:  # a cache that fails costs the dashboard its shortcut, nothing else
        logger.warning("django-durable: the cache failed; counting every hour", exc_info=True)
        return 0


def changed(alias: str) -> None:
    """Say that old runs of ``alias`` changed: once the transaction commits (at once outside
    one), the counts kept so far are not read again. Not before: a page drawn meanwhile
    would keep the old counts as new ones."""
    transaction.on_commit(partial(_next_generation, alias), using=alias)


def _next_generation(alias: str) -> None:
    # One atomic step of the cache (incr), not a read and a write: two processes noting a
    # change at once would both write the same next number, and a page drawn between them
    # would keep counts one of the changes made stale. The first change of all adds the key;
    # if another process added it first, incr moves it on. (Django's database cache reads
    # and writes in incr: there two changes at the same instant may count as one.)
    key = _generation_key(alias)
    try:
        try:
            cache.incr(key)
        except ValueError:  # no generation yet
            if not cache.add(key, 1, None):
                cache.incr(key)
    except Exception:
        logger.warning("django-durable: the cache failed to note a change", exc_info=True)


def read(keys: list[str]) -> dict[str, Any]:
    """Return the kept counts of ``keys`` that the cache has."""
    try:
        return dict(cache.get_many(keys))
    except Exception:
        logger.warning("django-durable: the cache failed; counting every hour", exc_info=True)
        return {}


def keep(counts: dict[str, Any]) -> None:
    """Keep ``counts`` (key: rows) for ``SECONDS``."""
    try:
        cache.set_many(counts, SECONDS)
    except Exception:
        logger.warning("django-durable: the cache failed to keep counts", exc_info=True)
