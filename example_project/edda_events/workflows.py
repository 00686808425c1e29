"""Edda's event waiting example (seed 003) as django-durable workflows.

Edda's ``wait_event(ctx, event_type, timeout_seconds=, model=)`` is
``ctx.wait_for_event(name, timeout=, model=)``, its ``wait_timer(ctx, duration_seconds=)`` is
``ctx.sleep(seconds)``, and an ``@activity`` is a ``@durable.step``. As in Edda, a waiting run
is stored in the database and holds no worker: the worker goes on with other runs, and the
event (or the timer) makes the run ready again.

Edda matches a CloudEvent to a waiting workflow by its ``type``; django-durable by the event's
name, which over HTTP is the CloudEvent's ``type`` and ``subject``:
``payment.completed:ORD-301`` here, so that each order's run gets its own payment.

The typed payload is a pydantic model (the ``django-durable-workflows[pydantic]`` extra,
installed with the ``dev`` extra that ``make demo`` installs).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

import django_durable as durable
from example_project.demos.timing import scaled

from .models import Payment

# Edda's payment workflow waits 5 minutes for the payment; at the demo's speed that would
# be a tenth of a second, too short for the demo to pay in time. A day: 2 seconds.
PAYMENT_TIMEOUT: timedelta = scaled(days=1)
# Edda's order_with_timeout waits 60 seconds before it checks the payment; the demo waits
# twelve hours of its time (one second), long enough for the customer to pay meanwhile.
PAYMENT_WINDOW: timedelta = scaled(hours=12)
# Edda's loan approval waits up to 48 hours for the decision: 4 seconds at the demo's speed.
DECISION_TIMEOUT: timedelta = scaled(hours=48)
# A payment workflow whose code raises is run again from its checkpoints, up to 3 times in all.
WORKFLOW_ATTEMPTS = 3


class PaymentCompleted(BaseModel):
    """The payment service's event, as Edda's example types it."""

    order_id: str
    transaction_id: str
    amount: float
    status: str


def payment_event(order_id: str) -> str:
    """Return the name the payment of ``order_id`` arrives under (CloudEvent type:subject)."""
    return f"payment.completed:{order_id}"


def decision_event(application_id: str) -> str:
    """Return the name the decision on loan application ``application_id`` arrives under."""
    return f"loan.approved:{application_id}"


# --- activities: @durable.step functions, checkpointed when a workflow calls them ----------


@durable.step
def start_payment_processing(order_id: str) -> dict[str, Any]:
    """Initiate payment processing with the external payment service (simulated)."""
    return {"payment_id": f"PAY-{order_id}", "status": "pending"}


@durable.step
def create_order(order_id: str) -> dict[str, Any]:
    """Create the order (simulated)."""
    return {"order_id": order_id, "status": "created"}


@durable.step
def check_payment_status(order_id: str) -> dict[str, Any]:
    """Ask the payment service whether the order was paid."""
    payment = Payment.objects.filter(order_id=order_id).first()
    if payment is None:
        return {"paid": False}
    return {"paid": True, "transaction_id": payment.transaction_id, "amount": str(payment.amount)}


@durable.step
def cancel_order(order_id: str, reason: str) -> dict[str, Any]:
    """Cancel the order (simulated)."""
    return {"order_id": order_id, "status": "cancelled", "reason": reason}


@durable.step
def submit_for_review(application_id: str) -> dict[str, Any]:
    """Put the loan application in front of a person (simulated)."""
    return {"application_id": application_id, "queue": "manual-review"}


@durable.step
def process_approval(application_id: str, decision: dict[str, Any]) -> dict[str, Any]:
    """Act on the decision; say which worker process did (the demo counts them)."""
    return {"application_id": application_id, "approved": decision["approved"], "pid": os.getpid()}


# --- workflows ------------------------------------------------------------------------------


@durable.workflow(name="edda.payment_workflow_typed", max_attempts=WORKFLOW_ATTEMPTS)
def payment_workflow_typed(ctx: durable.Context, order_id: str) -> dict[str, Any]:
    """Start the payment, wait for its typed completion event, or cancel after the timeout.

    An event whose data does not match ``PaymentCompleted`` raises ``EventDataInvalid``
    here: uncaught, it fails the run at once, with pydantic's explanation. The workflow's
    ``max_attempts`` does not retry it: the event it received does not change.
    """
    payment = start_payment_processing(order_id)
    try:
        event = ctx.wait_for_event(
            payment_event(order_id), timeout=PAYMENT_TIMEOUT, model=PaymentCompleted
        )
    except durable.EventTimeout:
        cancel_order(order_id, "payment_timeout")
        return {**payment, "status": "cancelled", "reason": "payment_timeout"}
    paid: PaymentCompleted = event.data  # typed: the IDE knows .amount is a float
    return {
        "status": "completed",
        "payment_id": payment["payment_id"],
        "typed_as": type(paid).__name__,
        "amount": paid.amount,
        "transaction_id": paid.transaction_id,
        "source": event.source,
        "type": event.type,
    }


@durable.workflow(name="edda.order_with_timeout")
def order_with_timeout(ctx: durable.Context, order_id: str) -> dict[str, Any]:
    """Create the order, wait a while for the payment (a durable timer), then check it."""
    create_order(order_id)
    ctx.sleep(PAYMENT_WINDOW, name="wait-for-payment")  # the run holds no worker meanwhile
    status = check_payment_status(order_id)
    if status["paid"]:
        return {"status": "completed", "transaction_id": status["transaction_id"]}
    cancel_order(order_id, "payment_timeout")
    return {"status": "cancelled", "reason": "payment_timeout"}


@durable.workflow(name="edda.loan_approval")
def loan_approval_workflow(ctx: durable.Context, application_id: str) -> dict[str, Any]:
    """Submit for manual review, wait up to 48 hours for the decision, act on it."""
    submit_for_review(application_id)
    try:
        event = ctx.wait_for_event(decision_event(application_id), timeout=DECISION_TIMEOUT)
    except durable.EventTimeout:
        return {"application_id": application_id, "approved": False, "reason": "no decision"}
    return process_approval(application_id, event.data)
