"""pyworkflow's ``07_hooks.py``: runs that wait for an external callback, typed or not.

pyworkflow's ``hook()`` suspends a run until someone resumes its token (``run_id:hook_id``)
with a payload. Here a run waits for a message on a topic (``ctx.recv``), sent to it by id
(``durable.send(run_id, payload, topic=...)``), or for an event by name
(``ctx.wait_for_event``), emitted by anyone (``durable.emit_event(name, data)``); the
event's data can be checked with a pydantic model, like ``define_hook``'s.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import django_durable as durable
from example_project.demos.timing import scaled

from ..notes import note


class ApprovalPayload(BaseModel):
    """Typed payload of a manager's approval."""

    approved: bool
    reviewer: str
    comments: str | None = None


def approval_event(order_id: str) -> str:
    """Return the name of the event that approves or rejects ``order_id``."""
    return f"manager_approval:{order_id}"


# What ``ctx.recv`` returns when nobody answered in time (the seed's hook expires).
NO_ANSWER = {"approved": False, "reason": "No answer in time"}


@durable.step
async def prepare_order(order_id: str) -> dict[str, Any]:
    """Prepare the order for review."""
    await note(f"Preparing order {order_id}...")
    return {"order_id": order_id, "status": "pending_approval"}


@durable.step
async def fulfill_order(order: dict[str, Any]) -> dict[str, Any]:
    """Fulfill the approved order."""
    await note(f"Fulfilling order {order['order_id']}...")
    return {**order, "status": "fulfilled"}


@durable.step
async def cancel_order(order: dict[str, Any], reason: str) -> dict[str, Any]:
    """Cancel the rejected order."""
    await note(f"Cancelling order {order['order_id']}: {reason}")
    return {**order, "status": "cancelled", "reason": reason}


@durable.workflow(name="pyworkflow.simple_approval_workflow")
async def simple_approval_workflow(ctx: durable.AsyncContext, order_id: str) -> dict[str, Any]:
    """Wait up to 24 hours for a message on "simple_approval", untyped."""
    order = await prepare_order(order_id)
    approval = await ctx.recv("simple_approval", timeout=scaled(hours=24), default=NO_ANSWER)
    if approval.get("approved"):
        return await fulfill_order(order)
    return await cancel_order(order, approval.get("reason", "Rejected"))


@durable.workflow(name="pyworkflow.approval_workflow")
async def approval_workflow(ctx: durable.AsyncContext, order_id: str) -> dict[str, Any]:
    """Wait up to 7 days for the manager's approval event, checked by ``ApprovalPayload``."""
    order = await prepare_order(order_id)
    event = await ctx.wait_for_event(
        approval_event(order_id), timeout=scaled(days=7), model=ApprovalPayload
    )
    approval: ApprovalPayload = event.data
    if approval.approved:
        return await fulfill_order({**order, "reviewer": approval.reviewer})
    return await cancel_order(order, approval.comments or "No reason given")


@durable.workflow(name="pyworkflow.multi_approval_workflow")
async def multi_approval_workflow(ctx: durable.AsyncContext, order_id: str) -> dict[str, Any]:
    """Wait for the manager's approval (24 hours), then for finance's (48 hours)."""
    order = await prepare_order(order_id)

    manager = await ctx.recv("manager_approval", timeout=scaled(hours=24), default=NO_ANSWER)
    if not manager.get("approved"):
        reason = manager.get("reason", "No reason")
        return await cancel_order(order, f"Manager rejected: {reason}")
    order = {**order, "manager_approved": True, "manager": manager.get("approver", "unknown")}

    finance = await ctx.recv("finance_approval", timeout=scaled(hours=48), default=NO_ANSWER)
    if not finance.get("approved"):
        reason = finance.get("reason", "No reason")
        return await cancel_order(order, f"Finance rejected: {reason}")
    order = {**order, "finance_approved": True, "finance_reviewer": finance.get("approver")}

    return await fulfill_order(order)
