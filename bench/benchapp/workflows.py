"""The benchmark workloads' workflows: trivial steps, so the engine's cost is what is measured."""

import django_durable as durable


def noop(index: int) -> int:
    return index


@durable.workflow(name="bench.ten_steps")
def ten_steps(ctx: durable.Context, steps: int = 10) -> int:
    """W1: a run of ``steps`` trivial steps."""
    return sum(ctx.step(f"s{i}", noop, i) for i in range(steps))


@durable.workflow(name="bench.one_step")
def one_step(ctx: durable.Context) -> int:
    """W2: a run of one trivial step."""
    return ctx.step("only", noop, 1)


def customer_key(customer: int) -> str:
    return str(customer)


@durable.workflow(name="bench.one_step_keyed", concurrency_key=customer_key, concurrency_limit=1)
def one_step_keyed(ctx: durable.Context, customer: int) -> int:
    """W2 with flow control: a run of one trivial step, one run per customer at once."""
    return ctx.step("only", noop, customer)


@durable.workflow(name="bench.wait_message")
def wait_message(ctx: durable.Context) -> object:
    """W3: wait in recv for the client's message, then finish."""
    return ctx.recv("go")


@durable.workflow(name="bench.stream_writer")
def stream_writer(ctx: durable.Context, items: int = 1000) -> int:
    """W4: write ``items`` stream items, then close the stream."""
    for index in range(items):
        ctx.write_stream("out", index)
    ctx.close_stream("out")
    return items


@durable.workflow(name="bench.stream_writer_batched")
def stream_writer_batched(ctx: durable.Context, items: int = 1000, batch: int = 100) -> int:
    """W4 batched: write ``items`` stream items ``batch`` at a time, then close the stream."""
    for start in range(0, items, batch):
        ctx.write_stream_many("out", range(start, min(start + batch, items)))
    ctx.close_stream("out")
    return items


from . import w5_workflows  # noqa: E402, F401  (W5: registered on import)
