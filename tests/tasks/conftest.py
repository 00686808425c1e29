"""What the Django Tasks tests share: the framework, from whichever home is installed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from django_durable.tasks import compat


class Received:
    """The task signals sent while a test runs: (signal name, status, attempts, errors)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int, list[str]]] = []

    def receiver(self, name: str) -> Any:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            errors = [error.exception_class_path for error in task_result.errors]
            self.sent.append((name, str(task_result.status), task_result.attempts, errors))

        return receive


@pytest.fixture
def signals() -> Iterator[Received]:
    received = Received()
    connected = [
        (compat.task_enqueued, received.receiver("enqueued")),
        (compat.task_started, received.receiver("started")),
        (compat.task_finished, received.receiver("finished")),
    ]
    for signal, receiver in connected:
        signal.connect(receiver, weak=False)
    yield received
    for signal, receiver in connected:
        signal.disconnect(receiver)
