"""Workflows of the compensation tests (tests/engine/test_saga.py and the worker process one).

An order reserves stock, charges the card and books the shipping, each with the step
that undoes it; ``fail_at`` names the step that fails (``FatalError``: never retried).
Every body, and every compensation, counts its executions (``Execution`` rows).
"""

from __future__ import annotations

import time

import django_durable as durable

from .workflows import executed

NO_RETRY = durable.RetryPolicy(max_attempts=1)
STAGES = ("reserve", "charge", "ship")


def _do(run_id: str, stage: str, fail_at: str) -> str:
    executed(run_id, stage)
    if stage == fail_at:
        raise durable.FatalError(f"{stage} refused")
    return f"{stage}-id"


def _undo(run_id: str, done: str, pause: float = 0.0, broken: str = "") -> str:
    executed(run_id, f"undo-{done}")
    time.sleep(pause)
    if done == f"{broken}-id":
        raise durable.FatalError(f"cannot undo {done}")
    return f"undone {done}"


@durable.workflow(name="tests.saga_order")
def saga_order(
    ctx: durable.Context, fail_at: str = "", pause: float = 0.0, broken: str = ""
) -> list[str]:
    with ctx.saga() as saga:
        done = []
        for stage in STAGES:
            done.append(
                saga.step(
                    stage,
                    _do,
                    ctx.run_id,
                    stage,
                    fail_at,
                    retry=NO_RETRY,
                    compensate=lambda result: _undo(ctx.run_id, result, pause, broken),
                )
            )
        return done


@durable.workflow(name="tests.saga_retried", max_attempts=2)
def saga_retried(ctx: durable.Context) -> str:
    """Fails in both attempts: the first is retried (no compensation), the second is final."""
    with ctx.saga() as saga:
        saga.step(
            "charge", _do, ctx.run_id, "charge", "", compensate=lambda r: _undo(ctx.run_id, r)
        )

        def flaky() -> None:
            count = executed(ctx.run_id, "flaky")
            raise RuntimeError(f"attempt {count} failed")

        ctx.step("flaky", flaky, retry=NO_RETRY)
    return "unreachable"


@durable.workflow(name="tests.saga_waits")
def saga_waits(ctx: durable.Context) -> str:
    """Charges, records the refund with ``add``, then waits for an event that never comes."""
    with ctx.saga() as saga:
        charged = ctx.step("charge", _do, ctx.run_id, "charge", "")
        saga.add("refund", _undo, ctx.run_id, charged)
        ctx.wait_for_event("never")
    return "unreachable"


@durable.workflow(name="tests.saga_handled")
def saga_handled(ctx: durable.Context) -> str:
    """Compensates by hand (``saga.compensate()``) after catching the failure, and completes."""
    saga = ctx.saga()
    saga.step("charge", _do, ctx.run_id, "charge", "", compensate=lambda r: _undo(ctx.run_id, r))
    try:
        saga.step("ship", _do, ctx.run_id, "ship", "ship", retry=NO_RETRY)
    except durable.FatalError:
        saga.compensate()
        return "cancelled the order"
    return "shipped"


@durable.workflow(name="tests.saga_async")
async def saga_async(ctx: durable.AsyncContext, fail_at: str = "") -> list[str]:
    def undo(result: str) -> str:  # a plain def: the ORM is synchronous
        return _undo(ctx.run_id, result)

    async with ctx.saga() as saga:
        return [
            await saga.step(stage, _do, ctx.run_id, stage, fail_at, retry=NO_RETRY, compensate=undo)
            for stage in STAGES
        ]
