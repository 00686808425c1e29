"""Polos's event-triggered workflows (seed 001), run end to end and measured.

- ``polos-triggered``: ``orders/created`` events, three published inside ``polos.place_order``
  runs and one by a view, each start one ``polos.on_order_created`` run. The two large
  orders wait for ``approvals/<order>``: a manager approves the view's, nobody the other,
  whose wait times out.
- ``polos-batched``: 23 ``data/updates`` events start three ``polos.batch_processor`` runs:
  two full batches of 10 at once, and a partial batch of 3 once its timeout has passed.
- ``polos-request-response``: ``polos.requester`` runs ask by event and wait for the answer
  by event; ``polos.quote_service`` runs start for the questions and answer them; a
  question nobody serves times out.

Every event of a demo carries something new (an order number with a fresh tag, a request
id from ``ctx.uuid()``), and each scenario looks only at the runs its own events started:
a second demo on the same database, or events left by an earlier one, change nothing.
"""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

import django_durable as durable
from django_durable.models import Event, Run, Step, TriggerDelivery, WorkerProcess
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage

from .workflows import (
    APPROVAL_LIMIT,
    APPROVAL_TIMEOUT,
    BATCH_TIMEOUT,
    RESPONSE_TIMEOUT,
    batch_processor,
    on_order_created,
    place_order,
    price_order,
    quote_service,
    requester,
)

SEED = "Polos: event-triggered workflows (seeds/001)"
BASKETS = (
    [{"sku": "tea", "price": "4.50", "quantity": 2}],
    [
        {"sku": "mug", "price": "12.00", "quantity": 1},
        {"sku": "tea", "price": "4.50", "quantity": 1},
    ],
    [{"sku": "espresso-machine", "price": "249.00", "quantity": 1}],  # nobody approves it
    [{"sku": "kettle", "price": "39.90", "quantity": 1}],  # ordered in a view, approved
)
APPROVAL = {"approved": True, "by": "manager@shop"}
UPDATES = 23  # two full batches of 10, and 3 left for the timeout
# Times are read from two clocks (the workers' and the database's): allow them this much.
SLACK = 0.05


def fresh_tag() -> str:
    """Return a short tag that no earlier demo used, for this demo's order numbers."""
    return uuid.uuid4().hex[:6].upper()


def started_by(
    workflow: durable.Workflow, event_ids: Iterable[int], since: datetime
) -> dict[int, list[durable.RunHandle]]:
    """Return, for each of ``event_ids``, the runs of ``workflow`` whose payload holds it.

    Only runs created from ``since`` on are read: the events are newer than that.
    """
    wanted = set(event_ids)
    found: dict[int, list[durable.RunHandle]] = {event_id: [] for event_id in wanted}
    runs = durable.list_runs(workflow=workflow.name, limit=1000, created_at__gte=since)
    for handle in runs:
        [payload], _ = handle.model.get_input()
        for event in payload["events"]:
            if event["id"] in wanted:
                found[event["id"]].append(handle)
    return found


def every_event_started(
    workflow: durable.Workflow, event_ids: Iterable[int], since: datetime
) -> dict[int, list[durable.RunHandle]]:
    """Return ``started_by(...)`` once each event has started a run, else nothing."""
    found = started_by(workflow, event_ids, since)
    return found if all(found.values()) else {}


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def shown(value: Any) -> str:
    """Return a stored value as JSON (a ``Decimal`` as its digits), keys sorted."""
    return json.dumps(value, sort_keys=True, cls=DjangoJSONEncoder)


def short(run_id: object) -> str:
    """Return the end of a run's id, as the admin's list shows it (and finds it by)."""
    return str(run_id)[-12:]


# --- polos-triggered ---------------------------------------------------------------------


@scenario(
    "polos-triggered",
    seed=SEED,
    title="Polos's trigger_on_event: a run per orders/created event; big orders wait for approval",
    order=100,
)
def triggered(stage: Stage) -> None:
    """Emit orders/created from three workflows and from a view; approve the large order."""
    stage.worker()
    since = timezone.now()
    tag = fresh_tag()
    orders = {f"{tag}-{number}": items for number, items in enumerate(BASKETS, 1)}
    *by_workflow, by_view = orders
    placers = {order_id: place_order.start(order_id, orders[order_id]) for order_id in by_workflow}
    for order_id, handle in placers.items():
        stage.say(f"Order {order_id}: started polos.place_order run {handle.id}")
    # What a view does: the event joins the transaction that saves the order.
    with transaction.atomic():
        event_ids = {by_view: emit_order_created(by_view, orders[by_view])}
    stage.say(f"Order {by_view}: a view emitted orders/created (event #{event_ids[by_view]})")
    for order_id, handle in placers.items():
        event_ids[order_id] = stage.result(handle)  # the id of the event it published
    found = stage.until(
        lambda: every_event_started(on_order_created, event_ids.values(), since),
        "a polos.on_order_created run for each orders/created event",
    )
    runs = {event_id: started[0] for event_id, started in found.items()}
    approval_id = approve(stage, by_view, runs[event_ids[by_view]])
    results = {
        order_id: stage.result(runs[event_ids[order_id]], timeout=stage.timeout + 5)
        for order_id in orders
    }
    report_triggered(stage, orders, event_ids, runs, results, since)
    report_approvals(stage, orders, runs, event_ids, results, approval_id)


def emit_order_created(order_id: str, items: list[dict[str, Any]]) -> int:
    order = price_order(order_id, items)
    return durable.emit_event("orders/created", order, source="shop.views", type="created")


def approve(stage: Stage, order_id: str, run: durable.RunHandle) -> int:
    """Wait until the order's run waits for its approval; approve it as a manager would."""
    topic = f"approvals/{order_id}"
    stage.until(
        lambda: Run.objects.filter(
            pk=run.id, status=durable.RunStatus.WAITING, wake_on=f"e:{topic}"
        ).exists(),
        f"run {run.id} to wait for {topic}",
    )
    stage.say(f"Order {order_id}, run {short(run.id)}: {stage.where(run)}")
    held = Run.objects.values_list("claimed_by", flat=True).get(pk=run.id)
    stage.measured(f"held by {'worker ' + held if held else 'no worker'} while it waits")
    approval_id = durable.emit_event(topic, APPROVAL, source="shop.admin", type="approved")
    stage.say(
        f"  a manager: emit_event({topic!r}, {json.dumps(APPROVAL)}, type='approved') "
        f"-> event #{approval_id}"
    )
    stage.check(held is None, f"Run {run.id} holds a worker while it waits for {topic}.")
    return approval_id


def report_triggered(
    stage: Stage,
    orders: dict[str, list[dict[str, Any]]],
    event_ids: dict[str, int],
    runs: dict[int, durable.RunHandle],
    results: dict[str, dict[str, Any]],
    since: datetime,
) -> None:
    events = Event.objects.in_bulk(event_ids.values())
    published = [e for e in events.values() if e.run_id is not None]
    stage.measured(
        f"{len(events)} orders/created events stored: {len(published)} published inside "
        f"polos.place_order runs (ctx.emit_event), {len(events) - len(published)} by a view"
    )
    delays = []
    for order_id in orders:
        event_id = event_ids[order_id]
        event, run = events[event_id], runs[event_id].refresh()
        delays.append(seconds(run.model.created_at, event.created_at))
        origin = f"run {short(event.run_id)}" if event.run_id else event.source
        outcome = results[order_id].get("confirmation") or results[order_id]["reason"]
        stage.measured(
            f"order {order_id}: event #{event_id} from {origin} started run {short(run.id)} "
            f"{delays[-1]:.2f}s later: {run.status}, {outcome!r}"
        )
    found = started_by(on_order_created, event_ids.values(), since)
    twice = [event_id for event_id, started in found.items() if len(started) != 1]
    stage.measured(
        f"{len(runs)} polos.on_order_created runs for {len(event_ids)} events, "
        f"{len(twice)} started twice; median start {statistics.median(delays):.2f}s "
        "after the event"
    )
    stage.check(not twice, f"Events that did not start exactly one run: {twice}")
    stage.check(len(published) == len(orders) - 1, "The workflows did not publish their events.")
    stage.check(
        all(events[event_id].type == "created" for event_id in event_ids.values()),
        "An orders/created event was stored without its event_type 'created'.",
    )


def report_approvals(
    stage: Stage,
    orders: dict[str, list[dict[str, Any]]],
    runs: dict[int, durable.RunHandle],
    event_ids: dict[str, int],
    results: dict[str, dict[str, Any]],
    approval_id: int,
) -> None:
    """Say what each large order's wait for ``approvals/<order>`` received; check them all."""
    *_, approved = orders
    for order_id, items in orders.items():
        order = price_order(order_id, items)
        result = results[order_id]
        run = runs[event_ids[order_id]]
        expected: dict[str, Any] = {
            "order_id": order_id,
            "event": event_ids[order_id],
            "status": "confirmed",
            "approval": None,
            "confirmation": f"Order {order_id} confirmed, paid by pay-{order_id}-{order['total']}.",
        }
        if order["total"] <= APPROVAL_LIMIT:
            stage.check(result == expected, f"Order {order_id} ended {result}, not {expected}.")
            continue
        wait = Step.objects.get(run_id=run.id, kind="event", name=f"approvals/{order_id}")
        waited = seconds(wait.recorded_at, run.model.started_at or run.model.created_at)
        if order_id == approved:
            expected["approval"] = {
                "topic": f"approvals/{order_id}",
                "type": "approved",
                "data": APPROVAL,
            }
            received = wait.get_result()["id"]
            stage.measured(
                f"order {order_id} ({order['total']} > {APPROVAL_LIMIT}): waited {waited:.2f}s "
                f"for approvals/{order_id}, received event #{received}: "
                f"{shown(result['approval'])}"
            )
            stage.check(received == approval_id, f"Order {order_id} got event #{received}.")
        else:
            expected = {**expected, "status": "held", "reason": "no approval in time"}
            del expected["approval"], expected["confirmation"]
            limit = APPROVAL_TIMEOUT.total_seconds()
            charged = Step.objects.filter(run_id=run.id, name="charge").exists()
            stage.measured(
                f"order {order_id} ({order['total']} > {APPROVAL_LIMIT}): nobody approved; "
                f"the wait timed out after {waited:.2f}s (timeout {limit:g}s), "
                f"{'CHARGED' if charged else 'not charged'}: {result['status']}"
            )
            stage.check(
                waited >= limit - SLACK and not charged,
                f"Order {order_id} was charged, or held after {waited:.2f}s.",
            )
        stage.check(result == expected, f"Order {order_id} ended {result}, not {expected}.")


# --- polos-batched -----------------------------------------------------------------------


@scenario(
    "polos-batched",
    seed=SEED,
    title="Polos's batched trigger: 10 events per run, or fewer after batch_timeout",
    order=110,
)
def batched(stage: Stage) -> None:
    """Emit 23 data/updates events at once; two full batches start, then a partial one."""
    proc = stage.worker()
    # A worker that is still starting would make the full batches wait for it too.
    running = WorkerProcess.objects.filter(pid=proc.pid, stopped_at__isnull=True)
    stage.until(running.exists, f"worker pid {proc.pid} to register")
    flush_earlier_batches(stage)
    since = timezone.now()
    tag = fresh_tag()
    with transaction.atomic():  # one import: the events commit together
        ids = [
            durable.emit_event("data/updates", {"import": tag, "row": row}, source="import")
            for row in range(1, UPDATES + 1)
        ]
    stage.say(f"Emitted {UPDATES} data/updates events (#{ids[0]}-#{ids[-1]}) in one transaction")
    batches = stage.until(
        lambda: batches_covering(ids, since), "polos.batch_processor runs for every event"
    )
    for handle in batches:
        stage.result(handle)
    report_batches(stage, ids, batches)


def flush_earlier_batches(stage: Stage) -> None:
    """Wait until no event from an earlier demo waits for a batch, so ours start afresh."""
    pending = TriggerDelivery.objects.filter(workflow_name=batch_processor.name)
    if left := pending.count():
        stage.say(f"({left} data/updates events of an earlier demo wait for a batch: flushing)")
        timeout = BATCH_TIMEOUT.total_seconds() + stage.timeout
        stage.until(lambda: not pending.exists(), "the earlier batch to start", timeout)


def batches_covering(ids: list[int], since: datetime) -> list[durable.RunHandle]:
    """Return the batch runs holding ``ids``, oldest first, once every id is in one."""
    found = every_event_started(batch_processor, ids, since)
    if not found:
        return []
    runs = {handle.id: handle for started in found.values() for handle in started}
    return sorted(runs.values(), key=lambda handle: handle.model.created_at)


def report_batches(stage: Stage, ids: list[int], batches: list[durable.RunHandle]) -> None:
    sizes, waits, order = [], [], []
    for handle in batches:
        run = handle.refresh().model
        [payload], _ = run.get_input()
        events = payload["events"]
        sizes.append(len(events))
        order += [event["id"] for event in events]
        waits.append(seconds(run.created_at, min(event["time"] for event in events)))
        first, last = events[0]["id"], events[-1]["id"]
        stage.measured(
            f"run {short(handle.id)}: {len(events)} events (#{first}-#{last}), "
            f"started {waits[-1]:.2f}s after its first event, {handle.status}, "
            f"stored {run.get_result()['stored']}"
        )
    limit = BATCH_TIMEOUT.total_seconds()
    stage.measured(
        f"{len(ids)} events -> {len(batches)} runs of {', '.join(map(str, sizes))} events; "
        f"batch_timeout {limit:g}s; every event in exactly one batch: {order == ids}"
    )
    stage.check(sizes == [10, 10, 3], f"Batches of {sizes}, not 10, 10 and 3.")
    stage.check(order == ids, "The batches did not hold every event once, in emission order.")
    stage.check(
        max(waits[:2]) < limit <= waits[2] + SLACK,
        f"Full batches should start before the {limit:g}s timeout and the partial one after "
        f"it; they started after {', '.join(f'{wait:.2f}s' for wait in waits)}.",
    )


# --- polos-request-response --------------------------------------------------------------

ASKS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("quotes", {"product": "widget", "quantity": 4}),
    ("quotes", {"product": "gadget", "quantity": 2}),
    ("refunds", {"order": "no-one-serves-this"}),  # no workflow triggers on requests/refunds
)


@scenario(
    "polos-request-response",
    seed=SEED,
    title="Polos's request and response by events: answered by a triggered run, or timed out",
    order=120,
)
def request_response(stage: Stage) -> None:
    """Three requesters ask by event; two are answered by triggered runs, one times out."""
    stage.worker()
    since = timezone.now()
    handles = [requester.start(service, action) for service, action in ASKS]
    for (service, action), handle in zip(ASKS, handles, strict=True):
        stage.say(f"polos.requester run {handle.id} asks requests/{service}: {shown(action)}")
    stage.say(f"  waiting: {stage.waiting(handles[-1])}")
    results = [stage.result(handle, timeout=stage.timeout + 5) for handle in handles]
    answers = {result["request_id"]: answered_by(result["request_id"], since) for result in results}
    report_requests(stage, handles, results, answers)


def answered_by(request_id: str, since: datetime) -> durable.RunHandle | None:
    """Return the quote_service run that answered request ``request_id``, if one did."""
    done = durable.list_runs(
        workflow=quote_service.name, status="completed", limit=1000, created_at__gte=since
    )
    return next((run for run in done if run.model.get_result() == request_id), None)


def report_requests(
    stage: Stage,
    handles: list[durable.RunHandle],
    results: list[dict[str, Any]],
    answers: dict[str, durable.RunHandle | None],
) -> None:
    limit = RESPONSE_TIMEOUT.total_seconds()
    for (service, action), handle, result in zip(ASKS, handles, results, strict=True):
        request_id = result["request_id"]
        asked = Event.objects.get(name=f"requests/{service}", run_id=handle.id)
        finished = handle.refresh().model.finished_at
        assert finished is not None  # stage.result() waited for the end
        waited = seconds(finished, asked.created_at)
        responder = answers[request_id]
        if result["answered"]:
            stage.measured(
                f"request {request_id[:8]} (requests/{service}): answered by "
                f"run {short(responder.id) if responder else '?'} after "
                f"{waited:.2f}s on responses/{request_id[:8]}...: {shown(result['response'])}"
            )
            expected = {**action, "price": Decimal("2.50") * action["quantity"]}
            stage.check(
                result["response"] == expected and responder is not None,
                f"Request {request_id} got {result['response']!r}, not {expected!r}.",
            )
        else:
            stage.measured(
                f"request {request_id[:8]} (requests/{service}): nobody answered; the wait "
                f"timed out after {waited:.2f}s (timeout {limit:g}s), {handle.status}"
            )
            stage.check(
                service == "refunds" and responder is None and waited >= limit - SLACK,
                f"Request {request_id} to {service} ended unanswered after {waited:.2f}s.",
            )
    answered = sum(result["answered"] for result in results)
    responders = {run.id for run in answers.values() if run is not None}
    stage.measured(
        f"{answered} of {len(results)} requests answered, by {len(responders)} triggered "
        f"{quote_service.name} runs; {len(results) - answered} timed out"
    )
    stage.check(answered == len(responders) == 2, "Not 2 of 3 requests answered, each once.")
