"""pyworkflow's ``09_child_workflows.py``: an order fulfilled by child workflows."""

from __future__ import annotations

from typing import Any

import django_durable as durable

from ..notes import note


@durable.step
async def validate_order(order_id: str) -> dict[str, Any]:
    """Validate order details."""
    await note(f"Validating order {order_id}...")
    return {"order_id": order_id, "valid": True}


@durable.step
async def process_payment(order_id: str, amount: float) -> dict[str, Any]:
    """Process payment for order."""
    await note(f"Processing payment ${amount:.2f} for {order_id}...")
    return {"order_id": order_id, "amount": amount, "paid": True}


@durable.step
async def ship_order(order_id: str) -> dict[str, Any]:
    """Ship the order."""
    await note(f"Shipping order {order_id}...")
    return {"order_id": order_id, "shipped": True}


@durable.step
async def send_email(recipient: str, subject: str) -> dict[str, Any]:
    """Send an email notification."""
    await note(f"Sending email to {recipient}: {subject}")
    return {"recipient": recipient, "subject": subject, "sent": True}


@durable.workflow(name="pyworkflow.child_demo_payment_workflow")
async def payment_workflow(ctx: durable.AsyncContext, order_id: str, amount: float) -> dict:
    """Child workflow for payment processing."""
    return await process_payment(order_id, amount)


@durable.workflow(name="pyworkflow.child_demo_shipping_workflow")
async def shipping_workflow(ctx: durable.AsyncContext, order_id: str) -> dict:
    """Child workflow for shipping."""
    return await ship_order(order_id)


@durable.workflow(name="pyworkflow.child_demo_notification_workflow")
async def notification_workflow(ctx: durable.AsyncContext, email: str, order_id: str) -> dict:
    """Child workflow for sending notifications."""
    return await send_email(email, f"Order {order_id} update")


@durable.workflow(name="pyworkflow.order_fulfillment_workflow")
async def order_fulfillment_workflow(
    ctx: durable.AsyncContext, order_id: str, amount: float, customer_email: str
) -> dict[str, Any]:
    """Validate the order, then pay and ship through child runs, then notify.

    ``ctx.run_child`` starts a child run and waits for its result (the seed's
    ``wait_for_completion=True``); the parent is suspended meanwhile and frees its worker.
    ``ctx.start_child`` returns a handle at once (``wait_for_completion=False``). A child
    still running when its parent finishes is cancelled (the seed's TERMINATE policy);
    ``parent_close="abandon"`` lets the notification go on alone.
    """
    validation = await validate_order(order_id)
    if not validation["valid"]:
        return {"order_id": order_id, "status": "invalid"}

    payment_result = await ctx.run_child(payment_workflow, order_id, amount)
    shipping_result = await ctx.run_child(shipping_workflow, order_id)

    # Fire-and-forget: returns a handle at once, and the parent goes on.
    notification_handle = await ctx.start_child(
        notification_workflow.using(parent_close="abandon"), customer_email, order_id
    )
    return {
        "order_id": order_id,
        "status": "fulfilled",
        "payment": payment_result,
        "shipping": shipping_result,
        "notification_run_id": notification_handle.run_id,
    }
