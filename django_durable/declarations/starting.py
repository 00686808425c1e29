"""How ``fulfill.start(...)`` reaches the client, which sits above the declarations.

A declaration is metadata and starts nothing itself: the client installs its start
functions here when the app is ready (``DurableConfig.ready``), and ``Workflow.start()``
calls whatever was installed. So declaring a workflow never imports the client, and the
client (which needs the models) loads only once Django's app registry is ready.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import DurableError

if TYPE_CHECKING:
    from ..client.handle import RunHandle
    from .workflows import StartOptions

    StartFunction = Callable[[StartOptions, Sequence[Any], dict[str, Any]], RunHandle]
    AsyncStartFunction = Callable[
        [StartOptions, Sequence[Any], dict[str, Any]], Awaitable[RunHandle]
    ]

_installed: dict[str, Any] = {}


def install(start: StartFunction, astart: AsyncStartFunction) -> None:
    """Make ``Workflow.start()`` and ``astart()`` call these (the client's) functions."""
    _installed.update(start=start, astart=astart)


def _get(name: str) -> Any:
    try:
        return _installed[name]
    except KeyError:
        raise DurableError(
            "Runs cannot start yet: Django's apps are not ready. Add 'django_durable' to "
            "INSTALLED_APPS and call django.setup() (manage.py and WSGI/ASGI do) first."
        ) from None


def start(options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]) -> RunHandle:
    """Start a run with the installed start function."""
    function: StartFunction = _get("start")
    return function(options, args, kwargs)


async def astart(options: StartOptions, args: Sequence[Any], kwargs: dict[str, Any]) -> RunHandle:
    """Start a run with the installed start function (async)."""
    function: AsyncStartFunction = _get("astart")
    return await function(options, args, kwargs)
