"""Absurd's event demo (seed 000), run end to end and measured from the database.

Three scenarios, as the seed's guide shows them:

- ``absurd-events``: two orders go through reserve, payment, ship, delivery. The first
  order's payment is emitted after its run waits for it; the second order's before its run
  even starts, and the wait receives it at once (events are kept, "race-free").
- ``absurd-broadcast``: one emission of ``daily.report.ready:<day>`` wakes every run waiting
  for it, and a run that starts waiting afterwards receives it too.
- ``absurd-timeout``: no payment comes; the wait times out and the run takes its timeout
  branch, putting the items back.

Event names carry a tag made for each scenario: events are kept until pruned, so an order
of an earlier demo on the same database must not pay for this one.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime
from typing import Any

import django_durable as durable
from django_durable.models import Event, Run, Step
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage

from .workflows import (
    PAYMENT_TIMEOUT,
    delivery_event,
    order_fulfillment,
    payment_event,
    report_subscriber,
)

SEED = "Absurd: the event-driven workflow demo, event_demo.py (seeds/000)"
PAYMENT = {"amount": 99.99, "method": "credit_card"}
DELIVERY = {"timestamp": "2025-01-02T15:00:00Z", "location": "Customer doorstep"}
SUBSCRIBERS = ("billing", "sales", "support", "warehouse", "finance")
# Times are read from two clocks (the workers' and the database's): allow them this much.
SLACK = 0.05


def order_id(number: int, tag: str) -> str:
    """Return the id of the demo's order ``number`` (0 to 99), unique to this scenario."""
    return f"order-{number}-{tag}"


def new_tag() -> str:
    """Return a short random tag that keeps this scenario's event names its own."""
    return secrets.token_hex(3)


# --- measuring ------------------------------------------------------------------------------


def steps(run: durable.RunHandle) -> list[Step]:
    """Return the run's recorded operations, in order."""
    return list(Step.objects.filter(run_id=run.id).order_by("position"))


def recorded(run: durable.RunHandle, kind: str, name: str) -> Step:
    """Return the run's record of ``kind`` named ``name``."""
    return Step.objects.get(run_id=run.id, kind=kind, name=name)


def claims(run: durable.RunHandle) -> int:
    """Return how many times a worker claimed the run (its fencing token counts them)."""
    return int(Run.objects.values_list("lease_token", flat=True).get(pk=run.id))


def held_by(run: durable.RunHandle) -> str:
    """Return which worker holds the run now, in words."""
    worker = Run.objects.values_list("claimed_by", flat=True).get(pk=run.id)
    return f"worker {worker}" if worker else "no worker"


def emitted_at(event_id: int) -> datetime:
    """Return when event ``event_id`` was stored, by the database's clock."""
    return Event.objects.values_list("created_at", flat=True).get(pk=event_id)


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def shown(value: Any) -> str:
    """Return a stored value as JSON, keys sorted: PostgreSQL's jsonb keeps no key order."""
    return json.dumps(value, sort_keys=True)


def waits_for(stage: Stage, run: durable.RunHandle, event: str) -> str:
    """Wait until the run waits for ``event``; return where it is, in the admin's words."""
    stage.until(
        lambda: Run.objects.filter(
            pk=run.id, status=durable.RunStatus.WAITING, wake_on=f"e:{event}"
        ).exists(),
        f"run {run.id} to wait for {event}",
    )
    return stage.where(run)


def emit(stage: Stage, name: str, data: dict[str, Any]) -> int:
    """Emit an event as Absurd's ``send_event.py`` does; say so; return its id."""
    event_id = durable.emit_event(name, data)
    stage.say(f"  emit_event({name!r}, {json.dumps(data)}) -> event #{event_id}")
    return event_id


# --- absurd-events ---------------------------------------------------------------------------


@scenario(
    "absurd-events",
    seed=SEED,
    title="Absurd's order fulfilment: reserve, wait for the payment, ship, wait for the delivery",
    order=10,
)
def events(stage: Stage) -> None:
    """Two orders: the payment emitted after the wait, and before it."""
    stage.worker()
    tag = new_tag()
    after = paid_after_the_wait(stage, order_id(1, tag))
    before = paid_before_the_wait(stage, order_id(2, tag))
    stage.say(
        f"Either order completed; the one paid early was claimed {before} times, "
        f"the other {after}: it never suspended for a payment that was already there."
    )


def paid_after_the_wait(stage: Stage, order: str) -> int:
    """Order ``order``: its run waits for the payment, then the payment comes."""
    stage.say(f"\nOrder {order}: the payment is emitted after the run waits for it")
    run = order_fulfillment.start(order)
    stage.say(f"  spawned run {run.id}")
    stage.say(f"  {waits_for(stage, run, payment_event(order))}")
    reserved = recorded(run, "step", "reserve-inventory")
    stage.measured(
        f"waiting, held by {held_by(run)}; checkpointed: reserve-inventory -> "
        f"{json.dumps(reserved.get_result()['items'])}"
    )
    payment_id = emit(stage, payment_event(order), PAYMENT)
    stage.say(f"  {waits_for(stage, run, delivery_event(order))}")
    stage.measured(f"waiting, held by {held_by(run)}; checkpointed: ship-order")
    emit(stage, delivery_event(order), DELIVERY)
    result = stage.result(run)
    stage.say(f"  completed: {shown(result)}")

    wait = recorded(run, "event", payment_event(order))
    late = seconds(emitted_at(payment_id), reserved.recorded_at)
    received = wait.get_result()["id"]
    stage.measured(
        f"payment event #{payment_id} emitted {late:.2f}s after the run reached its wait; "
        f"the wait received event #{received}"
    )
    count = claims(run)
    stage.measured(f"claimed by a worker {count} times: once to start, once after each event")
    stage.check(result["status"] == "completed", f"Order {order} did not complete: {result}")
    stage.check(received == payment_id, f"Order {order}'s wait received event #{received}.")
    stage.check(late > 0, f"Order {order}'s payment came before its wait ({late:.2f}s).")
    stage.check(count == 3, f"Order {order}'s run was claimed {count} times, not 3.")
    return count


def paid_before_the_wait(stage: Stage, order: str) -> int:
    """Order ``order``: the payment is emitted before its run exists; the wait gets it."""
    stage.say(f"\nOrder {order}: the payment is emitted before the run even starts")
    payment_id = emit(stage, payment_event(order), PAYMENT)
    run = order_fulfillment.start(order)
    stage.say(f"  spawned run {run.id}")
    stage.say(f"  {waits_for(stage, run, delivery_event(order))}")
    reserved = recorded(run, "step", "reserve-inventory")
    wait = recorded(run, "event", payment_event(order))
    received = wait.get_result()["id"]
    early = seconds(reserved.recorded_at, emitted_at(payment_id))
    stage.measured(
        f"the payment wait received event #{received} at once: it was emitted {early:.2f}s "
        "before the run reached its wait, and kept"
    )
    stage.measured(f"waiting, held by {held_by(run)}; checkpointed: ship-order")
    emit(stage, delivery_event(order), DELIVERY)
    result = stage.result(run)
    stage.say(f"  completed: {shown(result)}")
    count = claims(run)
    stage.measured(f"claimed by a worker {count} times: to start, and after the delivery")
    stage.check(result["status"] == "completed", f"Order {order} did not complete: {result}")
    stage.check(received == payment_id, f"Order {order}'s wait received event #{received}.")
    stage.check(early > 0, f"Order {order}'s payment came after its wait ({early:.2f}s).")
    stage.check(count == 2, f"Order {order}'s run was claimed {count} times, not 2.")
    return count


# --- absurd-broadcast -----------------------------------------------------------------------


@scenario(
    "absurd-broadcast",
    seed=SEED,
    title="Absurd's broadcast event: one emission wakes every run waiting for it",
    order=11,
)
def broadcast(stage: Stage) -> None:
    """Five subscribers wait for the day's report; one emission wakes them all."""
    stage.worker()
    name = f"daily.report.ready:2025-01-01-{new_tag()}"
    runs = [report_subscriber.start(who, name) for who in SUBSCRIBERS]
    stage.say(f"Started {len(runs)} runs of absurd.report_subscriber, each waiting for {name}")
    waiting = stage.until(
        lambda: (
            Run.objects.filter(
                pk__in=[run.id for run in runs],
                status=durable.RunStatus.WAITING,
                wake_on=f"e:{name}",
            ).count()
            == len(runs)
            and len(runs)
        ),
        f"{len(runs)} runs to wait for {name}",
    )
    held = Run.objects.filter(pk__in=[run.id for run in runs], claimed_by__isnull=False).count()
    stage.measured(f"{waiting} runs waiting for {name}, {held} held by a worker")

    began = time.monotonic()
    event_id = emit(stage, name, {"date": "2025-01-01", "url": "/reports/2025-01-01.pdf"})
    results = [stage.result(run) for run in runs]
    took = time.monotonic() - began
    received = sorted({result["event_id"] for result in results})
    stage.measured(
        f"{len(results)} runs completed {took:.2f}s after the one emission; "
        f"events they received: {', '.join(f'#{found}' for found in received)}"
    )
    stored = Event.objects.filter(name=name).count()
    stage.measured(f"events stored under {name}: {stored}")

    late = report_subscriber.start("audit", name)
    late_result = stage.result(late)
    stage.say(f"A sixth subscriber, audit, starts after the emission: {late_result['sent']}")
    stage.measured(
        f"it received event #{late_result['event_id']} at once, claimed {claims(late)} time"
    )
    stage.check(received == [event_id], f"The runs received events {received}, not #{event_id}.")
    stage.check(stored == 1, f"{stored} events were stored under {name}, not one.")
    stage.check(late_result["event_id"] == event_id, "The late subscriber missed the event.")
    stage.check(claims(late) == 1, "The late subscriber suspended for an event already there.")


# --- absurd-timeout -------------------------------------------------------------------------


@scenario(
    "absurd-timeout",
    seed=SEED,
    title="Absurd's event timeout: no payment in time, the run takes its timeout branch",
    order=12,
)
def timeout(stage: Stage) -> None:
    """An order nobody pays: the wait times out and the run puts the items back."""
    stage.worker()
    order = order_id(3, new_tag())
    limit = PAYMENT_TIMEOUT.total_seconds()
    stage.say(f"Order {order}: nobody pays; the payment wait has a {limit:g}s timeout")
    stage.say("  (a day, at the demo's speed: EXAMPLE_TIME_SCALE)")
    run = order_fulfillment.start(order)
    stage.say(f"  spawned run {run.id}")
    stage.say(f"  {waits_for(stage, run, payment_event(order))}")
    stage.measured(f"waiting with a deadline, held by {held_by(run)}")
    result = stage.result(run, timeout=limit + stage.timeout)
    stage.say(f"  completed through its timeout branch: {shown(result)}")

    reserved = recorded(run, "step", "reserve-inventory")
    wait = recorded(run, "event", payment_event(order))
    waited = seconds(wait.recorded_at, reserved.recorded_at)
    error = wait.error or {}
    names = " -> ".join(f"{step.name} ({step.status})" for step in steps(run))
    stage.measured(
        f"the wait recorded {error.get('type', '?').rsplit('.', 1)[-1]} after {waited:.2f}s"
    )
    stage.measured(f"records: {names}")
    stage.check(result["status"] == "cancelled", f"Order {order} was not cancelled: {result}")
    stage.check(
        waited >= limit - SLACK, f"The wait timed out after {waited:.2f}s, before {limit:g}s."
    )
    stage.check(
        not Step.objects.filter(run_id=run.id, name="ship-order").exists(),
        f"Order {order} shipped without a payment.",
    )
