"""Workflows of the batched stream tests (``ctx.write_stream_many``): tests/engine and worker."""

from __future__ import annotations

import time

import django_durable as durable


@durable.workflow(name="streams.batches")
def batches(ctx: durable.Context, sizes: list, close: bool = True) -> dict:
    """A single item, then a batch of each size, then a single item; return the offsets."""
    first = ctx.write_stream("out", "first")
    written = [
        list(ctx.write_stream_many("out", [{"batch": b, "item": i} for i in range(size)]))
        for b, size in enumerate(sizes)
    ]
    last = ctx.write_stream("out", "last")
    if close:
        ctx.close_stream("out")
    return {"first": first, "batches": written, "last": last}


@durable.workflow(name="streams.batch_sleep_batch")
def batch_sleep_batch(ctx: durable.Context, size: int) -> dict:
    """A batch, an empty batch, a sleep (the run suspends), a batch: the first two replay."""
    before = ctx.write_stream_many("out", range(size))
    empty = ctx.write_stream_many("out", [])
    ctx.sleep(1)  # long enough to be waiting when the run suspends, on a loaded machine
    after = ctx.write_stream_many("out", (size + i for i in range(size)))
    ctx.close_stream("out")
    return {"before": list(before), "empty": [empty.start, empty.stop], "after": list(after)}


@durable.workflow(name="streams.async_batches")
async def async_batches(ctx: durable.AsyncContext, size: int) -> dict:
    """The async twin of ``batch_sleep_batch``."""
    before = await ctx.write_stream_many("out", [f"a{i}" for i in range(size)])
    empty = await ctx.write_stream_many("out", ())
    await ctx.sleep(1)  # long enough to be waiting when the run suspends, on a loaded machine
    after = await ctx.write_stream_many("out", [f"b{i}" for i in range(size)])
    await ctx.close_stream("out")
    return {"before": list(before), "empty": [empty.start, empty.stop], "after": list(after)}


class Unstorable:
    """Not JSON."""


@durable.workflow(name="streams.bad_batch")
def bad_batch(ctx: durable.Context, kind: str) -> dict:
    """Write an item, try a bad batch (and catch its error), then a good batch."""
    ctx.write_stream("out", 0)
    bad: object = {
        "unstorable": [1, Unstorable(), 3],
        "oversized": [1, "x" * 2000, 3],
        "text": "abc",
        "mapping": {"a": 1},
        "over_the_count": (i for i in range(10_001)),
        "too_much_in_all": ["x" * 900 for _ in range(20)],
    }[kind]
    try:
        ctx.write_stream_many("out", bad)  # type: ignore[arg-type]
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc)}
    else:
        error = {}
    return {"error": error, "after": list(ctx.write_stream_many("out", [1, 2]))}


@durable.workflow(name="streams.batch_after_close")
def batch_after_close(ctx: durable.Context, size: int) -> None:
    ctx.write_stream_many("out", range(2))
    ctx.close_stream("out")
    ctx.write_stream_many("out", range(size))


@durable.workflow(name="streams.slow_batches")
def slow_batches(ctx: durable.Context, count: int, size: int, pause: float) -> list:
    """A step, then a batch of ``size`` items, ``count`` times: a kill lands between them.

    Item n of the stream is n. Returns each batch's offsets as [first, stop] (those of the
    batches written before a takeover come from replay). The sleep every other batch
    suspends the run, so that a run whose claims keep ending by a kill does not fail
    after MAX_RECOVERIES.
    """
    written = []
    for index in range(count):
        ctx.step(f"work-{index}", lambda index=index: (time.sleep(pause), index)[1])
        offsets = ctx.write_stream_many("out", range(index * size, (index + 1) * size))
        written.append([offsets.start, offsets.stop])
        if index % 2:
            ctx.sleep(0.01)
    ctx.close_stream("out")
    return written
