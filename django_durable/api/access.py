"""Who may see and operate which runs over HTTP.

The policy is a class named by ``DJANGO_DURABLE["API_ACCESS_POLICY"]``; subclass
:class:`AccessPolicy` to change a rule. Every API view asks it, and list views filter
with it, so nobody reads or touches a run they may not.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.core.signals import setting_changed
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from ..conf import SETTING_NAME, get_settings
from ..models import Run
from ..registry import Workflow


class AccessPolicy:
    """The default rules.

    - A run's owner (the user who started it over HTTP or with ``owner=``) may see it
      and operate it: send it messages, cancel it, retry it. Child runs have the owner
      of their parent.
    - ``django_durable.view_run`` sees every run, and error tracebacks.
    - ``django_durable.operate_run`` operates any run the user can see (with
      ``view_run``: every run).
    - Starting over HTTP needs an authenticated user and a workflow declared with
      ``http_start=True``.
    - Emitting an event needs ``django_durable.add_event``: an event may wake any run.
    - Anonymous users are refused everything.
    """

    def allows(self, user: Any) -> bool:
        """Return whether ``user`` may use the API at all."""
        return bool(user.is_authenticated)

    def visible_runs(self, user: Any, runs: QuerySet[Run]) -> QuerySet[Run]:
        """Return the runs of ``runs`` that ``user`` may list (agree with ``can_view``)."""
        if user.has_perm("django_durable.view_run"):
            return runs
        if not user.is_authenticated:
            return runs.none()
        return runs.filter(owner=user)

    def can_view(self, user: Any, run: Run) -> bool:
        """Return whether ``user`` may see ``run`` (every view of one run asks this)."""
        return self._owns(user, run) or user.has_perm("django_durable.view_run")

    def can_operate(self, user: Any, run: Run) -> bool:
        """Return whether ``user`` may operate ``run``: send it messages, cancel or retry it."""
        return self._owns(user, run) or user.has_perm("django_durable.operate_run")

    def can_start(self, user: Any, workflow: Workflow[Any, Any]) -> bool:
        """Return whether ``user`` may start ``workflow``."""
        return bool(user.is_authenticated and workflow.http_start)

    def can_emit(self, user: Any, name: str) -> bool:
        """Return whether ``user`` may emit the event ``name``."""
        return bool(user.has_perm("django_durable.add_event"))

    def can_see_tracebacks(self, user: Any) -> bool:
        """Return whether ``user`` may read error tracebacks (they show code and data)."""
        return bool(user.has_perm("django_durable.view_run"))

    @staticmethod
    def _owns(user: Any, run: Run) -> bool:
        return bool(user.is_authenticated and run.owner_id is not None and run.owner_id == user.pk)


@lru_cache(maxsize=1)
def get_access_policy() -> AccessPolicy:
    """Return the configured access policy."""
    policy = import_string(get_settings().API_ACCESS_POLICY)()
    if not isinstance(policy, AccessPolicy):
        raise TypeError(f"{SETTING_NAME}['API_ACCESS_POLICY'] must name an AccessPolicy subclass.")
    return policy


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        get_access_policy.cache_clear()


setting_changed.connect(_reset)
