"""Who may see and operate which runs over HTTP.

The policy is a class named by ``DJANGO_DURABLE["API_ACCESS_POLICY"]``; subclass
:class:`AccessPolicy` to change a rule. Every API view asks it, and list views filter
with it, so nobody reads or touches a run they may not. Every hook also receives the
``request`` (a DRF ``Request``), so that a project can plug a scheme of its own in (an API
key header, a tenant from the host name). A request that carries a per-run access token
is not asked about: the token decides (see ``client.tokens``).
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from ..core.conf import SETTING_NAME, get_settings
from ..declarations.workflows import Workflow
from ..models import Run


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
    - Forking a run (among those the user can see) needs ``django_durable.fork_run``,
      whoever owns it: a fork runs the workflow's code again, in a new run.
    - Anonymous users are refused everything.
    """

    def allows(self, user: Any, *, request: Any = None) -> bool:
        """Return whether ``user`` may use the API at all."""
        return bool(user.is_authenticated)

    def visible_runs(self, user: Any, runs: QuerySet[Run], *, request: Any = None) -> QuerySet[Run]:
        """Return the runs of ``runs`` that ``user`` may list (agree with ``can_view``)."""
        if user.has_perm("django_durable.view_run"):
            return runs
        if not user.is_authenticated:
            return runs.none()
        return runs.filter(owner=user)

    def can_view(self, user: Any, run: Run, *, request: Any = None) -> bool:
        """Return whether ``user`` may see ``run`` (every view of one run asks this)."""
        return self._owns(user, run) or user.has_perm("django_durable.view_run")

    def can_operate(self, user: Any, run: Run, *, request: Any = None) -> bool:
        """Return whether ``user`` may operate ``run``: send it messages, cancel or retry it."""
        return self._owns(user, run) or user.has_perm("django_durable.operate_run")

    def can_fork(self, user: Any, run: Run, *, request: Any = None) -> bool:
        """Return whether ``user`` may fork ``run`` (one they can see) from a step."""
        return bool(user.has_perm("django_durable.fork_run"))

    def can_start(self, user: Any, workflow: Workflow[Any, Any], *, request: Any = None) -> bool:
        """Return whether ``user`` may start ``workflow``."""
        return bool(user.is_authenticated and workflow.http_start)

    def can_emit(self, user: Any, name: str, *, request: Any = None) -> bool:
        """Return whether ``user`` may emit the event ``name``."""
        return bool(user.has_perm("django_durable.add_event"))

    def can_see_tracebacks(self, user: Any, *, request: Any = None) -> bool:
        """Return whether ``user`` may read error tracebacks (they show code and data)."""
        return bool(user.has_perm("django_durable.view_run"))

    @staticmethod
    def _owns(user: Any, run: Run) -> bool:
        return bool(user.is_authenticated and run.owner_id is not None and run.owner_id == user.pk)


HOOKS = (
    "allows",
    "visible_runs",
    "can_view",
    "can_operate",
    "can_fork",
    "can_start",
    "can_emit",
    "can_see_tracebacks",
)


@lru_cache(maxsize=1)
def get_access_policy() -> AccessPolicy:
    """Return the configured access policy; ``ImproperlyConfigured`` if it cannot serve."""
    where = f"{SETTING_NAME}['API_ACCESS_POLICY']"
    policy = import_string(get_settings().API_ACCESS_POLICY)()
    if not isinstance(policy, AccessPolicy):
        raise ImproperlyConfigured(f"{where} must name an AccessPolicy subclass.")
    for hook in HOOKS:
        parameters = inspect.signature(getattr(policy, hook)).parameters
        takes_request = "request" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
        if not takes_request:
            raise ImproperlyConfigured(
                f"{type(policy).__name__}.{hook}() of {where} must take a request= keyword "
                "argument: every hook receives the HTTP request (see the permissions reference)."
            )
    return policy


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        get_access_policy.cache_clear()


setting_changed.connect(_reset)
