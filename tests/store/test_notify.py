"""django_durable.store.notify: waiters that sleep on LISTEN/NOTIFY, polling as the fallback."""

from __future__ import annotations

from django_durable.store.notify import Waiter


def test_a_waiter_polls_quickly_again_once_what_it_awaits_moved(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "POLL_INTERVAL": 0.5}
    waiter = Waiter(["s:nothing"])
    waiter.listener = None  # polling, as on SQLite or with the listener down
    for _ in range(12):
        waiter.sleep(0.001)
    assert waiter.pause() == 0.5  # backed off to POLL_INTERVAL
    waiter.reset()
    assert waiter.pause() == 0.02
