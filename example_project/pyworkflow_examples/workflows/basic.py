"""pyworkflow's ``01_basic_workflow.py``: a three-step order, each step checkpointed."""

from __future__ import annotations

from typing import Any

import django_durable as durable

from ..notes import note


@durable.step
async def validate_order(order_id: str) -> dict[str, Any]:
    """Validate the order exists and is processable."""
    await note(f"Validating order {order_id}...")
    return {"order_id": order_id, "valid": True}


@durable.step
async def process_payment(order: dict[str, Any], amount: float) -> dict[str, Any]:
    """Process payment for the order."""
    await note(f"Processing payment ${amount:.2f} for {order['order_id']}...")
    return {**order, "paid": True, "amount": amount}


@durable.step
async def send_confirmation(order: dict[str, Any]) -> dict[str, Any]:
    """Send order confirmation email."""
    await note(f"Sending confirmation for {order['order_id']}...")
    return {**order, "confirmed": True}


@durable.workflow(name="pyworkflow.order_workflow")
async def order_workflow(ctx: durable.AsyncContext, order_id: str, amount: float) -> dict[str, Any]:
    """Validate the order, process the payment, send the confirmation.

    Each step's result is recorded in the database: a worker that replays the run after a
    crash gets the recorded results back instead of running the steps again.
    """
    order = await validate_order(order_id)
    order = await process_payment(order, amount)
    order = await send_confirmation(order)
    return order
