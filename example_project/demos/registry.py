"""The scenarios ``manage.py demo`` knows: one per seed example, in the seeds' order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.utils.module_loading import autodiscover_modules

if TYPE_CHECKING:
    from .stage import Stage


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario: its name on the command line, the seed it comes from, what it shows.

    ``order`` sorts them (the seeds' numbers first: 0xx for seed 000, 4xx for seed 004).
    ``own_workers``: the scenario starts and stops its own worker processes (it kills
    one), so the demo's shared worker is stopped before it runs.
    """

    name: str
    seed: str
    title: str
    order: int
    run: Callable[[Stage], None]
    own_workers: bool = False


_SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, *, seed: str, title: str, order: int, own_workers: bool = False
) -> Callable[[Callable[[Stage], None]], Callable[[Stage], None]]:
    """Register the decorated function as the scenario ``name``."""

    def register(function: Callable[[Stage], None]) -> Callable[[Stage], None]:
        if name in _SCENARIOS and _SCENARIOS[name].run is not function:
            raise ValueError(f"Two scenarios are named {name!r}.")
        _SCENARIOS[name] = Scenario(name, seed, title, order, function, own_workers)
        return function

    return register


def scenarios() -> list[Scenario]:
    """Return every installed app's scenarios, in order."""
    autodiscover_modules("scenario")
    return sorted(_SCENARIOS.values(), key=lambda found: (found.order, found.name))
