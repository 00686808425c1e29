"""pyworkflow's ``08_cancellation.py``: cancel a sleeping order; its cleanup runs shielded."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import django_durable as durable

from ..notes import note

# The seed's sleep("60s"), not scaled: the demo cancels the run during it. A cancellation
# wakes a sleeping run at once, so the run never waits the whole minute.
WAIT = timedelta(seconds=60)


@durable.step
async def reserve_inventory(order_id: str) -> dict[str, Any]:
    """Reserve inventory for order."""
    await note(f"Reserving inventory for order {order_id}...")
    await asyncio.sleep(0.1)  # Simulate API call
    return {"order_id": order_id, "inventory_reserved": True}


@durable.step
async def charge_payment(order: dict[str, Any]) -> dict[str, Any]:
    """Charge payment for order."""
    await note(f"Charging payment for order {order['order_id']}...")
    await asyncio.sleep(0.1)  # Simulate payment processing
    return {**order, "payment_charged": True}


@durable.step
async def create_shipment(order: dict[str, Any]) -> dict[str, Any]:
    """Create shipment for order."""
    await note(f"Creating shipment for order {order['order_id']}...")
    await asyncio.sleep(0.1)  # Simulate shipment creation
    return {**order, "shipment_created": True}


@durable.step
async def release_inventory(order_id: str) -> None:
    """Release previously reserved inventory (compensation)."""
    await note(f"[Cleanup] Releasing inventory for order {order_id}...")
    await asyncio.sleep(0.05)


@durable.step
async def refund_payment(order_id: str) -> None:
    """Refund charged payment (compensation)."""
    await note(f"[Cleanup] Refunding payment for order {order_id}...")
    await asyncio.sleep(0.05)


@durable.workflow(name="pyworkflow.cancellable_order_workflow")
async def cancellable_order_workflow(ctx: durable.AsyncContext, order_id: str) -> dict:
    """Reserve, wait for approval, charge, wait for the warehouse, ship; undo if cancelled.

    ``durable.cancel(run_id)`` (or ``manage.py durable runs cancel RUN_ID``) wakes a
    sleeping run, and ``durable.Cancelled`` is raised where it slept. A step that is running
    is never interrupted: the cancellation is raised at the next durable operation.
    """
    try:
        order = await reserve_inventory(order_id)
        await ctx.sleep(WAIT, name="wait-for-approval")  # cancel here...
        order = await charge_payment(order)
        await ctx.sleep(WAIT, name="wait-for-warehouse")  # ...or here
        order = await create_shipment(order)
        return order
    except durable.Cancelled:
        # Outside a shield every durable operation of a cancelled run raises Cancelled
        # again: the shield lets the compensation steps run (and finish).
        with ctx.shield():
            await release_inventory(order_id)
            await refund_payment(order_id)
        raise  # the run ends cancelled


@durable.workflow(name="pyworkflow.cancel_demo_simple_workflow")
async def cancel_demo_simple_workflow(ctx: durable.AsyncContext, data: str) -> str:
    """Sleep, then answer: cancelled during the sleep, it ends cancelled with no cleanup."""
    await ctx.sleep(WAIT)  # Cancel during this sleep
    return f"result_{data}"
