"""Absurd's event demo (seed 000) as django-durable workflows.

Absurd's ``event_demo.py`` fulfils an order by waiting for events:

1. reserve the inventory (a checkpointed step);
2. wait for ``payment.confirmed:<order>`` (an external event);
3. ship the order (a checkpointed step);
4. wait for ``shipment.delivered:<order>`` (an external event);
5. complete, with the final status.

Absurd's calls map one to one: ``@app.register_task`` is ``@durable.workflow``,
``ctx.step(name, fn)`` is ``ctx.step(name, fn, *args)``, ``ctx.await_event(name,
timeout=)`` is ``ctx.wait_for_event(name, timeout=)`` and ``app.emit_event(name, payload)``
is ``durable.emit_event(name, data)``. As in Absurd, an event emitted before the run
reaches its wait is kept, and the wait receives it at once.

The payment has a time limit (Absurd's "Event Timeouts"): with no payment within
``PAYMENT_TIMEOUT`` the run takes its timeout branch, puts the items back and cancels the
order. ``report_subscriber`` is Absurd's broadcast pattern: every run waiting for one name
is woken by a single emission.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

import django_durable as durable
from example_project.demos.timing import scaled

# How long a customer has to pay: a day, which the demo's clock makes two seconds
# (``EXAMPLE_TIME_SCALE``; ``DURABLE_EXAMPLE_TIME_SCALE=1`` makes it a real day).
PAYMENT_TIMEOUT: timedelta = scaled(days=1)


def payment_event(order_id: str) -> str:
    """Return the event the payment provider's confirmation of ``order_id`` arrives as."""
    return f"payment.confirmed:{order_id}"


def delivery_event(order_id: str) -> str:
    """Return the event the carrier's proof of delivery of ``order_id`` arrives as."""
    return f"shipment.delivered:{order_id}"


# --- the steps: plain functions, checkpointed by ctx.step() ------------------------------


def reserve_inventory(order_id: str) -> dict[str, Any]:
    """Set the order's items aside in the warehouse (simulated)."""
    return {
        "items": ["widget-A", "gadget-B"],
        "warehouse": "US-EAST-1",
        "reserved_at": timezone.now().isoformat(),
    }


def ship_order(order_id: str) -> dict[str, Any]:
    """Hand the parcel to the carrier (simulated); return its tracking number."""
    return {
        "tracking_number": f"1Z999{order_id}",
        "carrier": "UPS",
        "shipped_at": timezone.now().isoformat(),
    }


def release_inventory(order_id: str, reservation: dict[str, Any]) -> dict[str, Any]:
    """Put the reserved items back on the shelf (simulated)."""
    return {"released": reservation["items"], "warehouse": reservation["warehouse"]}


# --- the workflows ------------------------------------------------------------------------


@durable.workflow(name="absurd.order_fulfillment")
def order_fulfillment(ctx: durable.Context, order_id: str) -> dict[str, Any]:
    """Reserve, wait for the payment, ship, wait for the delivery, complete.

    While it waits the run is stored as ``waiting`` and holds no worker: the worker that ran
    it goes on with other runs, and the event makes the run ``pending`` again.
    """
    reservation = ctx.step("reserve-inventory", reserve_inventory, order_id)
    try:
        payment = ctx.wait_for_event(payment_event(order_id), timeout=PAYMENT_TIMEOUT)
    except durable.EventTimeout:  # a TimeoutError, as in Absurd
        released = ctx.step("release-inventory", release_inventory, order_id, reservation)
        return {
            "order_id": order_id,
            "status": "cancelled",
            "reason": "no payment in time",
            "released": released["released"],
        }
    shipment = ctx.step("ship-order", ship_order, order_id)
    delivery = ctx.wait_for_event(delivery_event(order_id))
    return {
        "order_id": order_id,
        "status": "completed",
        "payment": payment.data,
        "tracking_number": shipment["tracking_number"],
        "delivery": delivery.data,
    }


def deliver_report(subscriber: str, report: dict[str, Any]) -> str:
    """Send the day's report to one subscriber (simulated); return where it went."""
    return f"{report['url']} sent to {subscriber}"


@durable.workflow(name="absurd.report_subscriber")
def report_subscriber(ctx: durable.Context, subscriber: str, report_event: str) -> dict[str, Any]:
    """Absurd's broadcast pattern: wait for the day's report, which many runs wait for."""
    report = ctx.wait_for_event(report_event)
    sent = ctx.step("deliver-report", deliver_report, subscriber, report.data)
    return {"subscriber": subscriber, "event_id": report.id, "sent": sent}
