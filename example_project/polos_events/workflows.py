"""Polos's event-triggered workflows (seed 001), written with django-durable.

- ``on_order_created`` starts by itself for every ``orders/created`` event: one run per
  event, whoever emitted it (a view, a shell, or ``place_order`` below). An order over
  ``APPROVAL_LIMIT`` waits for ``approvals/<order>`` before it is charged.
- ``place_order`` publishes ``orders/created`` from inside a workflow, once.
- ``batch_processor`` starts for every 10 ``data/updates`` events, or for fewer once the
  oldest has waited ``BATCH_TIMEOUT``.
- ``requester`` asks a question by event and waits for the answer by event, with a
  timeout; ``quote_service`` starts by itself for each question and answers it.

``python manage.py demo polos-triggered polos-batched polos-request-response`` runs them.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import django_durable as durable
from example_project.demos.timing import scale

# The seed waits 30 seconds for a batch to fill, 300 for an answer and an hour for an
# approval. The demo's clock runs fast (a day is two seconds), which would make each a
# tenth of a second at most: too short to tell a partial batch from a full one, or for the
# answering run or the manager to act. So the demo waits one second for a batch and three
# for an answer or an approval; at real speed, the seed's times.
REAL_TIME = scale() >= 1
BATCH_TIMEOUT = timedelta(seconds=30 if REAL_TIME else 1)
RESPONSE_TIMEOUT = timedelta(seconds=300 if REAL_TIME else 3)
APPROVAL_TIMEOUT = timedelta(seconds=3600 if REAL_TIME else 3)
# Orders above this total wait for a manager's approval before they are charged.
APPROVAL_LIMIT = Decimal("30.00")


# --- a workflow per event ------------------------------------------------------------


def price_order(order_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the order (a Decimal: it comes back from the database as one)."""
    total = sum(Decimal(item["price"]) * item["quantity"] for item in items)
    return {"order_id": order_id, "total": total, "items": len(items)}


@durable.workflow(name="polos.place_order")
def place_order(ctx: durable.Context, order_id: str, items: list[dict[str, Any]]) -> int:
    """Price the order, then publish ``orders/created`` (once, however often it replays)."""
    order = ctx.step("price-order", price_order, order_id, items)
    return ctx.emit_event("orders/created", order, source=ctx.workflow_name, type="created")


def charge(order_id: str, total: Decimal) -> str:
    """Charge the customer (simulated); return the payment's reference."""
    return f"pay-{order_id}-{total}"


def send_confirmation(order_id: str, payment: str) -> str:
    """Mail the customer (simulated); return what was sent."""
    return f"Order {order_id} confirmed, paid by {payment}."


@durable.workflow(name="polos.on_order_created", trigger_on_event="orders/created")
def on_order_created(ctx: durable.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Process one new order: a run starts by itself for each ``orders/created`` event.

    A large order first waits for ``approvals/<order>``; the run holds no worker meanwhile.
    """
    [event] = payload["events"]  # batch_size is 1: one event per run
    order = event["data"]
    approval = None
    if order["total"] > APPROVAL_LIMIT:
        try:
            approved = ctx.wait_for_event(
                f"approvals/{order['order_id']}", timeout=APPROVAL_TIMEOUT
            )
        except durable.EventTimeout:
            return {
                "order_id": order["order_id"],
                "event": event["id"],
                "status": "held",
                "reason": "no approval in time",
            }
        approval = {"topic": approved.name, "type": approved.type, "data": approved.data}
    payment = ctx.step("charge", charge, order["order_id"], order["total"])
    mail = ctx.step("send-confirmation", send_confirmation, order["order_id"], payment)
    return {
        "order_id": order["order_id"],
        "event": event["id"],
        "status": "confirmed",
        "approval": approval,
        "confirmation": mail,
    }


# --- a workflow per batch of events -----------------------------------------------------


def store_updates(updates: list[dict[str, Any]]) -> int:
    """Write the updates in one go (simulated); return how many were written."""
    return len(updates)


@durable.workflow(
    name="polos.batch_processor",
    trigger_on_event="data/updates",
    batch_size=10,  # up to 10 events per run
    batch_timeout=BATCH_TIMEOUT,  # or fewer, once the oldest has waited this long
)
def batch_processor(ctx: durable.Context, payload: dict[str, Any]) -> dict[str, Any]:
    """Store a batch of ``data/updates`` events in one step."""
    events = payload["events"]
    stored = ctx.step("store-updates", store_updates, [event["data"] for event in events])
    return {"events": [event["id"] for event in events], "stored": stored}


# --- request and response ---------------------------------------------------------------


@durable.workflow(name="polos.requester")
def requester(ctx: durable.Context, service: str, action: dict[str, Any]) -> dict[str, Any]:
    """Ask ``service`` by event, and wait for the answer to this request by event."""
    request_id = str(ctx.uuid())  # recorded once: a replay asks under the same id
    ctx.emit_event(f"requests/{service}", {"request_id": request_id, **action})
    try:
        response = ctx.wait_for_event(f"responses/{request_id}", timeout=RESPONSE_TIMEOUT)
    except durable.EventTimeout:
        return {"request_id": request_id, "answered": False}
    return {"request_id": request_id, "answered": True, "response": response.data}


def quote(product: str, quantity: int) -> dict[str, Any]:
    """Price ``quantity`` of ``product`` (simulated)."""
    return {"product": product, "quantity": quantity, "price": Decimal("2.50") * quantity}


@durable.workflow(name="polos.quote_service", trigger_on_event="requests/quotes")
def quote_service(ctx: durable.Context, payload: dict[str, Any]) -> str:
    """Answer one request for a quote: publish ``responses/<its id>``."""
    [event] = payload["events"]
    request = event["data"]
    answer = ctx.step("quote", quote, request["product"], request["quantity"])
    ctx.emit_event(f"responses/{request['request_id']}", answer, source=ctx.workflow_name)
    return request["request_id"]
