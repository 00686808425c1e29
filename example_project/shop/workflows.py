"""Order fulfilment as a durable workflow: the first code to read in the example project.

``fulfill_order`` reads like a plain function, but every step's result is checkpointed in
the database. If the worker running it dies, another worker replays the function from the
top: finished steps return their recorded results instantly, and execution carries on
from the first step without a checkpoint. ``python manage.py demo`` shows it happening.

The step bodies write a ``StepLog`` row so that the demo can count which process ran
what; a real project would not need them.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import django_durable as durable

from .models import Order, StepLog

# Each step body pauses this long, standing in for real work (a warehouse API, a card
# network), so that the demo's SIGKILL can land in the middle of one.
WORK_SECONDS = 0.4
# The durable timer: the run is suspended and its worker is free for other runs.
WAREHOUSE_SECONDS = 1.5
# Steps run with atomic=True: their database writes commit in one transaction with
# their checkpoint. The demo's report reads this to tell the two kinds apart.
ATOMIC_STEPS = frozenset({"reserve-inventory", "ship"})


def log_execution(run_id: str, step: str) -> int:
    """Record that this process executes ``step`` of ``run_id``; return the count so far."""
    StepLog.objects.create(run_id=run_id, step=step, pid=os.getpid())
    return StepLog.objects.filter(run_id=run_id, step=step).count()


def reserve_inventory(run_id: str, order_id: int) -> str:
    """Set the order's items aside (runs with ``atomic=True``: exactly once)."""
    log_execution(run_id, "reserve-inventory")
    time.sleep(WORK_SECONDS)
    Order.objects.filter(pk=order_id).update(status=Order.Status.RESERVED)
    return Order.Status.RESERVED.value


@durable.step(
    name="charge-payment",
    retry=durable.RetryPolicy(max_attempts=3, initial_delay=0.5, backoff=2.0),
)
def charge_payment(run_id: str, order_id: int) -> dict[str, Any]:
    """Charge the customer through the payment provider (simulated).

    Not atomic: the provider is outside our database, so a worker that dies during the
    call leaves no checkpoint and the call is made again (at-least-once). A real
    provider takes an idempotency key for exactly that; ``payment_id`` plays its part.
    """
    if log_execution(run_id, "charge-payment") == 1:
        # The provider turns down every order's first call, so that the demo shows a
        # retry; decided by the count, not at random, so every demo behaves the same.
        raise durable.RetryableError("The payment provider is busy; try again shortly.")
    time.sleep(WORK_SECONDS)
    amount = Order.objects.values_list("amount", flat=True).get(pk=order_id)
    return {"payment_id": f"pay-{order_id}-{run_id[-8:]}", "amount": str(amount)}


def ship(run_id: str, order_id: int, parcel: uuid.UUID) -> str:
    """Hand the parcel to the carrier and store the tracking number (atomic: exactly once)."""
    log_execution(run_id, "ship")
    time.sleep(WORK_SECONDS)
    tracking = f"TRK-{order_id:05d}-{parcel.hex[:8].upper()}"
    Order.objects.filter(pk=order_id).update(status=Order.Status.SHIPPED, tracking=tracking)
    return tracking


@durable.workflow(name="shop.fulfill_order", http_start=True)
def fulfill_order(ctx: durable.Context, order_id: int) -> dict[str, Any]:
    """Reserve the items, charge the customer, wait for the warehouse, ship the parcel."""
    # ``ctx.run_id`` is passed only so that the bodies can write their StepLog rows.
    ctx.step("reserve-inventory", reserve_inventory, ctx.run_id, order_id, atomic=True)
    payment = charge_payment(ctx.run_id, order_id)  # a @durable.step: checkpointed too
    ctx.sleep(WAREHOUSE_SECONDS, name="wait-for-warehouse")
    # Recorded once: a replay after a crash gets the same parcel id, so the same tracking.
    parcel = ctx.uuid()
    tracking = ctx.step("ship", ship, ctx.run_id, order_id, parcel, atomic=True)
    return {"order": order_id, "payment": payment["payment_id"], "tracking": tracking}
