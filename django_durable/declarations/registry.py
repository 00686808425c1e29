"""The registry: every declared workflow by name, filled as apps import their workflows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import autodiscover_modules

from ..core.conf import get_settings
from ..core.patterns import PatternIndex
from ..exceptions import DurableError, WorkflowNotFound

if TYPE_CHECKING:
    from .workflows import Workflow

_workflows: dict[str, Workflow[Any, Any]] = {}
# The workflows by the event name or pattern they trigger on, built at the first emission
# after the registry changed (declarations are code: it changes at import, and in tests),
# with the generation of the registry it was built from.
_generation = 0
_triggers: tuple[int, PatternIndex[Workflow[Any, Any]]] | None = None


def default_name(fn: Callable[..., Any]) -> str:
    """Return the name a function is registered under when it is given none."""
    return f"{fn.__module__}.{fn.__qualname__}"


def register(wf: Workflow[Any, Any]) -> None:
    """Add ``wf`` to the registry; a different function under a taken name is an error."""
    existing = _workflows.get(wf.name)
    if existing is not None and default_name(existing.fn) != default_name(wf.fn):
        raise DurableError(
            f"Workflow name {wf.name!r} is registered twice: by "
            f"{default_name(existing.fn)} and by {default_name(wf.fn)}. "
            "Give one of them another name=."
        )
    _workflows[wf.name] = wf
    _forget_triggers()


def unregister(name: str) -> None:
    """Remove a workflow from the registry (for tests)."""
    _workflows.pop(name, None)
    _forget_triggers()


def _forget_triggers() -> None:
    global _generation
    _generation += 1


def get_workflow(name: str) -> Workflow[Any, Any]:
    """Return the workflow registered as ``name`` or raise ``WorkflowNotFound``."""
    try:
        return _workflows[name]
    except KeyError:
        known = ", ".join(sorted(_workflows)) or "none"
        raise WorkflowNotFound(
            f"No workflow named {name!r} is registered (registered: {known}). "
            f"Define it with @durable.workflow in an installed app's "
            f"{get_settings().AUTODISCOVER_MODULE!r} module."
        ) from None


def triggered_by(event: str) -> list[Workflow[Any, Any]]:
    """Return the workflows whose ``trigger_on_event`` is ``event`` or a pattern matching it.

    One look-up in an index of the triggers (a dict of names, a tree of patterns), not a
    scan of the registry.
    """
    global _triggers
    built = _triggers
    if built is None or built[0] != _generation:
        generation, workflows = _generation, list(_workflows.values())
        triggers = [(wf.trigger.event, wf) for wf in workflows if wf.trigger is not None]
        index = PatternIndex(triggers)
        built = _triggers = (generation, index)
    return built[1].match(event)


def registered_workflows() -> dict[str, Workflow[Any, Any]]:
    """Return a copy of the registry, name to workflow."""
    return dict(_workflows)


def autodiscover() -> None:
    """Import the workflows module of every installed app."""
    autodiscover_modules(get_settings().AUTODISCOVER_MODULE)
