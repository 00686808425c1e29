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
