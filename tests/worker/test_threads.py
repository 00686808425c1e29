"""The execution threads: a claim put in is executed, then each claim ``follow`` returns
after it, in the same thread; a run that raises does not end the thread."""

from __future__ import annotations

import threading
import uuid
from types import SimpleNamespace

from django_durable.worker.threads import ExecutionThreads


def claim(name: str) -> SimpleNamespace:
    return SimpleNamespace(run_id=uuid.uuid4(), workflow_name=name)


def test_a_thread_goes_on_with_the_claims_follow_returns_then_back_to_the_queue():
    first, second, third, other = claim("first"), claim("second"), claim("third"), claim("other")
    chain = {first.run_id: second, second.run_id: third}
    done: list[tuple[str, str]] = []
    finished = threading.Event()

    def process(c):
        done.append((c.workflow_name, threading.current_thread().name))
        if c is other:
            finished.set()

    threads = ExecutionThreads(1, process, follow=lambda c: chain.get(c.run_id), worker_id="test")
    threads.start()
    threads.put(first)
    threads.put(other)
    assert finished.wait(5)
    threads.stop(join=True)
    assert [name for name, _ in done] == ["first", "second", "third", "other"]
    assert {thread for _, thread in done} == {"durable-run-0"}


def test_a_run_that_raises_is_logged_and_its_thread_follows_on(caplog):
    first, second = claim("first"), claim("second")
    done = threading.Event()

    def process(c):
        if c is first:
            raise KeyboardInterrupt  # what a run could raise past the worker's own handling
        done.set()

    threads = ExecutionThreads(
        1, process, follow=lambda c: second if c is first else None, worker_id="test"
    )
    threads.start()
    threads.put(first)
    assert done.wait(5)
    threads.stop(join=True)
    assert f"run {first.run_id} raised" in caplog.text
