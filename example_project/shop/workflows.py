"""Order fulfilment as a durable workflow: the first code to read in the example project.

``fulfill_order`` reads like a plain function, but every step's result is checkpointed in
the database. If the worker running it dies, another worker replays the function from the
top: finished steps return their recorded results instantly, and execution carries on
from the first step without a checkpoint. ``python manage.py demo`` shows it happening.

The step bodies write a ``StepLog`` row so that the demo can count which process ran
what; a real project would not need them.

``checkout`` is the run behind the shop's order page (``/shop/``): it publishes its
progress and the steps it finished for the shopper's browser to follow, and waits for the
shopper to approve the order before it ships.

``bank_transfer`` waits days for the bank's notice of a payment: the run the admin's
support desk is for (docs/howto/operating-runs.md), where a person finds it waiting and
emits the late notice from its page.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
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


# --- the checkout behind the order page --------------------------------------------------

# Each checkout step pauses this long, standing in for real work, so that a person watching
# the order page sees the bar move and the steps arrive one by one.
CHECKOUT_SECONDS = 0.6
# How long the shopper has to approve. Then the order is cancelled and its items released:
# a reservation nobody confirms must not hold stock for ever.
APPROVAL_TIMEOUT = timedelta(minutes=10)
# What ``ctx.recv`` returns when the timeout passes: no message can be this object.
NO_ANSWER = object()


def check_stock(order_id: int) -> bool:
    """Ask the warehouse whether the items are there (simulated: they always are)."""
    time.sleep(CHECKOUT_SECONDS)
    return True


def reserve_items(order_id: int) -> str:
    """Set the order's items aside (idempotent: a re-run writes the same)."""
    time.sleep(CHECKOUT_SECONDS)
    Order.objects.filter(pk=order_id).update(status=Order.Status.RESERVED)
    return Order.Status.RESERVED.value


def authorise_payment(order_id: int) -> str:
    """Put a hold on the shopper's card (simulated); return the authorisation's id."""
    time.sleep(CHECKOUT_SECONDS)
    return f"auth-{order_id:05d}"


def ship_order(order_id: int, parcel: uuid.UUID) -> str:
    """Hand the parcel to the carrier; store and return the tracking number."""
    time.sleep(CHECKOUT_SECONDS)
    tracking = f"TRK-{order_id:05d}-{parcel.hex[:8].upper()}"
    Order.objects.filter(pk=order_id).update(status=Order.Status.SHIPPED, tracking=tracking)
    return tracking


def release_items(order_id: int) -> str:
    """Put the items back on the shelf and cancel the order."""
    Order.objects.filter(pk=order_id).update(status=Order.Status.CANCELLED)
    return Order.Status.CANCELLED.value


# The steps before the approval: (name, what the shopper reads while it runs, and once it
# is done, body).
CHECKOUT_STEPS = (
    ("check-stock", "Checking stock", "Items in stock", check_stock),
    ("reserve-items", "Setting your items aside", "Items set aside for you", reserve_items),
    ("authorise-payment", "Authorising your payment", "Payment authorised", authorise_payment),
)


def tell(ctx: durable.Context, step: str, label: str, state: str, **more: Any) -> None:
    """Append a step's new state to the "steps" stream, which the order page lists.

    The stream holds every change in order, so a page opened late (or reloaded) reads it
    from the start and draws the same list. The progress bar's label says what is
    happening now; the list says what is done.
    """
    ctx.write_stream("steps", {"step": step, "label": label, "state": state, **more})


@durable.workflow(name="shop.checkout")
def checkout(ctx: durable.Context, order_id: int) -> dict[str, Any]:
    """Check, reserve and authorise; wait for the shopper's approval; then ship, or release."""
    total = len(CHECKOUT_STEPS) + 2  # and the approval, and the shipping
    for done, (name, doing, finished, body) in enumerate(CHECKOUT_STEPS):
        ctx.set_progress(done, total, doing)
        ctx.step(name, body, order_id)
        tell(ctx, name, finished, "done")
    waited = len(CHECKOUT_STEPS)
    ctx.set_progress(waited, total, "Waiting for your approval")
    # The page shows the deadline; ctx.now() is recorded, so a replay tells the same one.
    deadline = ctx.now() + APPROVAL_TIMEOUT
    tell(ctx, "approval", "Waiting for your approval", "waiting", until=deadline.isoformat())
    answer = ctx.recv("approval", timeout=APPROVAL_TIMEOUT, default=NO_ANSWER)
    if not (isinstance(answer, dict) and answer.get("approved") is True):
        reason = "not approved in time" if answer is NO_ANSWER else "declined"
        ctx.step("release-items", release_items, order_id)
        tell(ctx, "approval", f"Order cancelled: {reason}", "failed")
        ctx.set_progress(waited, total, "Cancelled")
        ctx.close_stream("steps")
        return {"outcome": "cancelled", "reason": reason}
    tell(ctx, "approval", "Approved by you", "done")
    ctx.set_progress(waited + 1, total, "Handing your parcel to the carrier")
    # Recorded once: a replay after a crash gets the same parcel id, so the same tracking.
    tracking = ctx.step("ship", ship_order, order_id, ctx.uuid())
    tell(ctx, "ship", "Handed to the carrier", "done")
    ctx.set_progress(total, total, "Shipped")
    ctx.close_stream("steps")
    return {"outcome": "shipped", "tracking": tracking}


# --- an order paid by bank transfer: what the admin's support desk is for ---------------

# How long a transfer may take to arrive before the order is cancelled and its items go back.
TRANSFER_TIMEOUT = timedelta(days=3)


def transfer_event(order_id: int) -> str:
    """Return the name of the event the bank's notice of ``order_id``'s transfer arrives as."""
    return f"bank.transfer_received:{order_id}"


def check_amount(order_id: int, received: Any) -> str:
    """Compare what the bank received with the order's amount; a mismatch is for a person.

    ``FatalError``: trying again would not change the amount, so the run fails at once and
    the admin's run page says why, in the customer's words.
    """
    expected = Order.objects.values_list("amount", flat=True).get(pk=order_id)
    if not isinstance(received, dict) or str(received.get("amount")) != str(expected):
        got = received.get("amount") if isinstance(received, dict) else received
        raise durable.FatalError(f"received {got!r} for order {order_id}, expected '{expected}'")
    return str(expected)


@durable.workflow(name="shop.bank_transfer")
def bank_transfer(ctx: durable.Context, order_id: int) -> dict[str, Any]:
    """Set the items aside, wait for the bank's notice of the transfer, check it, ship.

    The bank's webhook emits ``bank.transfer_received:<order id>`` with the amount received
    (``{"amount": "42.00"}``); when it is late or lost, a support person emits it from the
    run's page in the admin, where the run says it waits for that event. No notice within
    ``TRANSFER_TIMEOUT``: the order is cancelled and its items released.
    """
    ctx.step("reserve-items", reserve_items, order_id)
    try:
        notice = ctx.wait_for_event(transfer_event(order_id), timeout=TRANSFER_TIMEOUT)
    except durable.EventTimeout:
        ctx.step("release-items", release_items, order_id)
        return {"outcome": "cancelled", "reason": "no transfer in time"}
    paid = ctx.step("check-amount", check_amount, order_id, notice.data)
    tracking = ctx.step("ship", ship_order, order_id, ctx.uuid())
    return {"outcome": "shipped", "paid": paid, "tracking": tracking}
