"""Messages at scale across worker processes, and streams whose writer is killed.

- Thousands of messages from several sender threads to many runs, on several topics,
  consumed by several worker processes: none lost, none taken twice, and each (run, topic)
  receives its messages in the order they were sent. Every run returns what it received,
  in order, and the test compares that with what it sent; the message and step rows must
  agree. The chaos tier does the same at a larger scale while workers are SIGKILLed.
- Runs that write stream items step by step while their worker is SIGKILLed again and
  again: afterwards each stream's offsets are 0..n-1 with no gap and no duplicate, and a
  reader that followed the stream as it grew saw every item exactly once, in order.

Sizes differ per backend (SQLite has one writer at a time); the assertions do not.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import signal
import time
from collections import Counter
from typing import Any

import pytest
from django.db.models import Count, Max

import django_durable as durable
from django_durable.models import Message, Run, RunStatus, Step, StreamItem
from tests.conftest import ON_POSTGRES, WorkerProcesses, wait_for
from tests.reliability._races import HANG, Racer, report
from tests.testapp import race_workflows as rw

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@dataclasses.dataclass(frozen=True)
class Inboxes:
    """How many runs receive how many messages, from how many senders and workers."""

    runs: int
    topics: int
    per_topic: int
    senders: int
    workers: int
    burst: int  # consecutive messages a sender sends to one (run, topic)

    @property
    def total(self) -> int:
        return self.runs * self.topics * self.per_topic


MESSAGES = (
    Inboxes(runs=50, topics=2, per_topic=60, senders=3, workers=3, burst=20)
    if ON_POSTGRES
    else Inboxes(runs=100, topics=2, per_topic=100, senders=2, workers=2, burst=20)
)
MESSAGES_CHAOS = Inboxes(runs=100, topics=4, per_topic=50, senders=4, workers=4, burst=25)
# Under kills in `make test`: a SIGKILL every second, four at most, on each database.
MESSAGES_KILLS = Inboxes(runs=20, topics=2, per_topic=40, senders=2, workers=3, burst=10)


def send_all(
    pairs: list[tuple[str, str]], per_topic: int, burst: int
) -> dict[tuple[str, str], list[str]]:
    """Send ``per_topic`` messages to each (run, topic), ``burst`` at a time; return them."""
    sent: dict[tuple[str, str], list[str]] = {pair: [] for pair in pairs}
    for start in range(0, per_topic, burst):
        for run_id, topic in pairs:
            for number in range(start, min(start + burst, per_topic)):
                message = f"{topic}/{number}"
                durable.send(run_id, message, topic=topic)
                sent[run_id, topic].append(message)
    return sent


def exchange(
    processes: WorkerProcesses,
    scale: Inboxes,
    *,
    kill_every: float | None = None,
    most_kills: int | None = None,
) -> dict[str, Any]:
    """Run the inboxes of ``scale`` through worker processes; check and return figures.

    With ``kill_every``, a worker is SIGKILLed that often (``most_kills`` times at most).
    """
    topics = [f"topic-{index}" for index in range(scale.topics)]
    handles = [rw.inbox.start(topics, scale.per_topic) for _ in range(scale.runs)]
    args = ("--concurrency", "4", "--lease", "2", "--poll-interval", "0.2")
    workers = [processes.start(*args) for _ in range(scale.workers)]
    pairs = [(handle.id, topic) for handle in handles for topic in topics]
    started = time.monotonic()
    senders = [
        Racer(
            f"sender-{k}",
            lambda k=k: send_all(pairs[k :: scale.senders], scale.per_topic, scale.burst),
        )
        for k in range(scale.senders)
    ]
    kills = 0
    if kill_every is not None:
        kills = kill_while(
            processes,
            workers,
            args,
            kill_every,
            lambda: not Run.objects.active().exists(),
            most=most_kills,
        )
    sent: dict[tuple[str, str], list[str]] = {}
    for sender in senders:
        sent.update(sender.join(HANG * 10))
    wait_for(lambda: not Run.objects.active().exists(), HANG * 10, "every inbox run finished")
    seconds = time.monotonic() - started
    received = {
        (handle.id, topic): messages
        for handle in handles
        for topic, messages in handle.result(timeout=1).items()
    }
    figures = check_messages(sent, received, handles)
    figures.update(kills=kills, seconds=seconds, per_second=scale.total / seconds)
    return figures


def check_messages(
    sent: dict[tuple[str, str], list[str]],
    received: dict[tuple[str, str], list[str]],
    handles: list[durable.RunHandle],
) -> dict[str, Any]:
    """Compare what each (run, topic) received with what was sent; cross-check the rows."""
    total = sum(len(messages) for messages in sent.values())
    out_of_order = [pair for pair in sent if received.get(pair) != sent[pair]]
    sent_count = Counter(m for pair, ms in sent.items() for m in ms for _ in [pair])
    got = Counter((pair, m) for pair, ms in received.items() for m in ms)
    want = Counter((pair, m) for pair, ms in sent.items() for m in ms)
    lost = sum((want - got).values())
    duplicates = sum((got - want).values())
    rows = Message.objects.filter(run_id__in=[h.id for h in handles])
    taken_twice = (
        rows.values("run_id", "consumed_position").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    figures = {
        "sent": total,
        "received": sum(got.values()),
        "lost": lost,
        "duplicates": duplicates,
        "out_of_order": len(out_of_order),
        "unconsumed": rows.filter(consumed_at__isnull=True).count(),
        "taken_twice": taken_twice,
    }
    assert len(sent_count) <= total
    assert (lost, duplicates, out_of_order) == (0, 0, []), figures
    assert rows.count() == total
    assert (figures["unconsumed"], taken_twice) == (0, 0), figures
    recvs = Step.objects.filter(run_id__in=[h.id for h in handles], kind="recv")
    assert recvs.filter(status="completed").count() == total
    assert Run.objects.filter(
        pk__in=[h.id for h in handles], status=RunStatus.COMPLETED
    ).count() == len(handles)
    return figures


def kill_while(
    processes: WorkerProcesses,
    workers: list[Any],
    args: tuple[str, ...],
    interval: float,
    done: Any,
    *,
    most: int | None = None,
) -> int:
    """SIGKILL one worker every ``interval`` s, in turn, starting a new one, until ``done()``
    (or ``most`` kills)."""
    for kills in itertools.count():
        if kills == most:
            return kills
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline:
            if done():
                return kills
            time.sleep(0.1)
        slot = kills % len(workers)
        processes.signal(workers[slot], signal.SIGKILL)
        workers[slot].wait(30)
        workers[slot] = processes.start(*args)
    raise AssertionError("unreachable")


def test_thousands_of_messages_none_lost_none_twice_fifo_per_topic(worker_processes):
    figures = exchange(worker_processes, MESSAGES)
    report("messages", backend="postgresql" if ON_POSTGRES else "sqlite", **figures)


@pytest.mark.chaos
def test_20000_messages_none_lost_none_twice_fifo_per_topic(worker_processes):
    figures = exchange(worker_processes, MESSAGES_CHAOS)
    report("messages chaos", backend="postgresql" if ON_POSTGRES else "sqlite", **figures)


@pytest.mark.parametrize(
    ("scale", "kill_every", "most_kills"),
    [
        pytest.param(MESSAGES_KILLS, 1.0, 4, id="short"),
        pytest.param(MESSAGES_CHAOS, 3.0, None, id="20000", marks=pytest.mark.chaos),
    ],
)
def test_messages_while_workers_are_sigkilled(worker_processes, scale, kill_every, most_kills):
    figures = exchange(worker_processes, scale, kill_every=kill_every, most_kills=most_kills)
    assert figures["kills"] > 0
    report("messages kill-9", backend="postgresql" if ON_POSTGRES else "sqlite", **figures)


# --- streams whose writer is killed ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Streams:
    runs: int
    items: int
    kills: int


STREAMS = Streams(runs=3, items=20, kills=5)
STREAMS_CHAOS = Streams(runs=8, items=600, kills=40)


def stream_sizes(handles: list[durable.RunHandle]) -> dict[str, int]:
    """Return the number of items each run's stream holds (its closing row excluded)."""
    rows = (
        StreamItem.objects.filter(run_id__in=[h.id for h in handles], closes=False)
        .values("run_id")
        .annotate(n=Count("id"))
    )
    sizes = {str(row["run_id"]): row["n"] for row in rows}
    return {h.id: sizes.get(h.id, 0) for h in handles}


def moved_on(handles: list[durable.RunHandle], seen: dict[str, int]) -> bool:
    """Return whether every unfinished stream has two items more than in ``seen``."""
    now = stream_sizes(handles)
    active = {str(pk) for pk in Run.objects.active().values_list("pk", flat=True)}
    return all(now[run_id] >= seen[run_id] + 2 for run_id in active)


def write_streams_under_kills(processes: WorkerProcesses, scale: Streams) -> dict[str, Any]:
    """Write the streams of ``scale`` while SIGKILLing their workers; check them."""
    handles = [rw.stream_writer.start(scale.items, pause=0.02, every=1) for _ in range(scale.runs)]
    followers = [
        Racer(
            f"follower-{index}",
            lambda handle=handle: list(
                durable.read_stream(handle.id, "out", follow=True, timeout=HANG * 10)
            ),
        )
        for index, handle in enumerate(handles)
    ]
    args = ("--concurrency", "4", "--lease", "1", "--poll-interval", "0.1")
    workers = [processes.start(*args) for _ in range(2)]
    kills = 0
    seen = stream_sizes(handles)
    while kills < scale.kills and Run.objects.active().exists():
        # Two new items in every unfinished stream since the last kill: each run suspended
        # (it sleeps after each item) in between, so no run is taken over MAX_RECOVERIES
        # times in a row, which would fail it.
        wait_for(functools.partial(moved_on, handles, seen), HANG * 2, "the streams to grow")
        seen = stream_sizes(handles)
        victim = kills % len(workers)
        processes.signal(workers[victim], signal.SIGKILL)
        workers[victim].wait(30)
        workers[victim] = processes.start(*args)
        kills += 1
    wait_for(lambda: not Run.objects.active().exists(), HANG * 10, "the streams finished")
    followed = [follower.join(HANG * 10) for follower in followers]
    for handle, items in zip(handles, followed, strict=True):
        assert handle.result(timeout=1) == scale.items, processes.logs()
        rows = list(
            StreamItem.objects.filter(run_id=handle.id, key="out")
            .order_by("offset")
            .values_list("offset", "closes")
        )
        assert rows == [(n, False) for n in range(scale.items)] + [(scale.items, True)]
        assert items == list(range(scale.items))  # item n is n: each once, in order
    recoveries = Run.objects.filter(pk__in=[h.id for h in handles]).aggregate(Max("recoveries"))
    return {
        "runs": scale.runs,
        "items": scale.runs * scale.items,
        "kills": kills,
        "gaps": 0,
        "duplicates": 0,
        "followers_exactly_once_in_order": len(followers),
        "max_recoveries_left": recoveries["recoveries__max"],
    }


def test_stream_offsets_stay_dense_while_the_writer_is_sigkilled_again_and_again(
    worker_processes,
):
    figures = write_streams_under_kills(worker_processes, STREAMS)
    assert figures["kills"] == STREAMS.kills
    report("streams kill-9", **figures)


@pytest.mark.chaos
def test_stream_offsets_stay_dense_under_40_kills(worker_processes):
    figures = write_streams_under_kills(worker_processes, STREAMS_CHAOS)
    assert figures["kills"] == STREAMS_CHAOS.kills
    report("streams kill-9 chaos", **figures)
