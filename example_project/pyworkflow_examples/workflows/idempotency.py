"""pyworkflow's ``05_idempotency.py``: a payment started twice with one key runs once."""

from __future__ import annotations

from typing import Any

import django_durable as durable

from ..notes import note


@durable.step
async def validate_payment(payment_id: str, amount: float) -> dict[str, Any]:
    """Validate the payment request."""
    await note(f"Validating payment {payment_id} for ${amount:.2f}...")
    return {"payment_id": payment_id, "amount": amount, "valid": True}


@durable.step
async def charge_payment(payment: dict[str, Any]) -> dict[str, Any]:
    """Charge the payment: this step should only run once per payment."""
    await note(f"CHARGING payment {payment['payment_id']} for ${payment['amount']:.2f}...")
    return {**payment, "charged": True, "transaction_id": f"txn_{payment['payment_id']}"}


@durable.step
async def send_receipt(payment: dict[str, Any]) -> dict[str, Any]:
    """Send payment receipt."""
    await note(f"Sending receipt for {payment['payment_id']}...")
    return {**payment, "receipt_sent": True}


@durable.workflow(name="pyworkflow.payment_workflow")
async def payment_workflow(ctx: durable.AsyncContext, payment_id: str, amount: float) -> dict:
    """Validate, charge, send the receipt.

    Start it with an idempotency key, one per payment (``payment-<payment id>``):
    ``payment_workflow.using(idempotency_key=key).start(...)``, or ``manage.py durable start
    ... --idempotency-key KEY``. A start with a key that a run already has returns that run,
    whatever its status and whatever the arguments, and starts nothing.
    """
    payment = await validate_payment(payment_id, amount)
    payment = await charge_payment(payment)
    payment = await send_receipt(payment)
    return payment
