"""Edda's event waiting example (seed 003), run end to end and measured from the database.

- ``edda-typed-events``: three orders wait for a typed ``payment.completed`` event with a
  timeout. One gets a valid payment, one a payment pydantic rejects (the run fails fast, in
  pydantic's words), one none (the run takes its timeout branch).
- ``edda-timer``: Edda's ``order_with_timeout``: a durable timer, then a check; one order is
  paid while its run sleeps, the other is not.
- ``edda-many-waiting``: fifty loan applications wait for their decisions at once, served by
  one worker process with four threads: the runs wait in the database, not in the worker.
- ``edda-cloudevents``: payments posted over HTTP as CloudEvents, in structured and binary
  mode, redelivered, and malformed.

Order and application ids carry a tag made for each scenario: events are kept until pruned,
so an order of an earlier demo on the same database must not pay for this one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import django_durable as durable
from django_durable.models import Event, Run, Step, WorkerProcess
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage

from .models import Payment
from .workflows import (
    DECISION_TIMEOUT,
    PAYMENT_TIMEOUT,
    PAYMENT_WINDOW,
    WORKFLOW_ATTEMPTS,
    decision_event,
    loan_approval_workflow,
    order_with_timeout,
    payment_event,
    payment_workflow_typed,
)

SEED = "Edda: the event waiting example, event_waiting_workflow.py (seeds/003)"
# The queue of the fifty loan applications, served by a worker of its own.
LOANS_QUEUE = "edda-loans"
APPLICATIONS = 50
LOAN_WORKER_CONCURRENCY = 4
# A worker heartbeats every LEASE_SECONDS / 3 (10 s by default): one not heard from for three
# heartbeats is gone.
ALIVE_WITHIN = timedelta(seconds=30)
# Times are read from two clocks (the workers' and the database's): allow them this much.
SLACK = 0.05


def new_tag() -> str:
    """Return a short random tag that keeps this scenario's event names its own."""
    return secrets.token_hex(3)


def order_id(number: int, tag: str) -> str:
    """Return the id of the demo's order ``number`` (300 to 399), unique to this scenario."""
    return f"ORD-{number}-{tag}"


def waits_for(stage: Stage, run: durable.RunHandle, event: str) -> str:
    """Wait until the run waits for ``event``; return where it is, in the admin's words."""
    stage.until(
        lambda: Run.objects.filter(
            pk=run.id, status=durable.RunStatus.WAITING, wake_on=f"e:{event}"
        ).exists(),
        f"run {run.id} to wait for {event}",
    )
    return stage.where(run)


def held_by(run: durable.RunHandle) -> str:
    """Return which worker holds the run now, in words."""
    worker = Run.objects.values_list("claimed_by", flat=True).get(pk=run.id)
    return f"worker {worker}" if worker else "no worker"


def claims(run: durable.RunHandle) -> int:
    """Return how many times a worker claimed the run (its fencing token counts them)."""
    return int(Run.objects.values_list("lease_token", flat=True).get(pk=run.id))


def record(run: durable.RunHandle, name: str) -> Step:
    """Return the run's record named ``name`` (a step's name, an event's, a sleep's)."""
    return Step.objects.get(run_id=run.id, name=name)


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def shown(value: Any) -> str:
    """Return a stored value as JSON, keys sorted: PostgreSQL's jsonb keeps no key order."""
    return json.dumps(value, sort_keys=True)


def payment(order: str, amount: Any = 99.99) -> dict[str, Any]:
    """Return the payment service's data for ``order``, as Edda's example sends it."""
    return {
        "order_id": order,
        "transaction_id": f"TXN-{order}",
        "amount": amount,
        "status": "success",
    }


# --- edda-typed-events ------------------------------------------------------------------------


@scenario(
    "edda-typed-events",
    seed=SEED,
    title="Edda's wait_event with a pydantic model and a timeout",
    order=310,
)
def typed_events(stage: Stage) -> None:
    """A valid payment, a malformed one, and none at all, each waited for with a timeout."""
    stage.worker()
    tag = new_tag()
    valid, invalid, missing = (order_id(number, tag) for number in (301, 302, 303))
    limit = PAYMENT_TIMEOUT.total_seconds()
    stage.say(
        f"Three runs of edda.payment_workflow_typed wait for payment.completed:<order> "
        f"as PaymentCompleted, with a {limit:g}s timeout (a day at the demo's speed)"
    )
    runs = {order: payment_workflow_typed.start(order) for order in (valid, invalid, missing)}
    for order, run in runs.items():
        stage.say(f"  {order}: {waits_for(stage, run, payment_event(order))}")
    waiting = Run.objects.filter(
        pk__in=[run.id for run in runs.values()], status="waiting", claimed_by__isnull=True
    ).count()
    stage.measured(f"{waiting} of 3 runs waiting, held by no worker")

    stage.say(f"\n{valid}: the payment service sends a valid payment")
    event_id = durable.emit_event(
        payment_event(valid), payment(valid), source="payment-service", type="payment.completed"
    )
    result = stage.result(runs[valid])
    stage.say(f"  emitted event #{event_id}; the run returned {shown(result)}")
    stage.measured(
        f"event.data was a {result['typed_as']}: amount {result['amount']!r} "
        f"({type(result['amount']).__name__}), source {result['source']!r}"
    )
    stage.check(result["status"] == "completed", f"{valid} did not complete: {result}")
    stage.check(result["typed_as"] == "PaymentCompleted", f"event.data was {result['typed_as']}.")
    stage.check(isinstance(result["amount"], float), "The amount did not arrive as a float.")

    stage.say(f"\n{invalid}: the payment service sends an amount that is not a number")
    bad = payment(invalid, amount="ninety-nine")
    durable.emit_event(payment_event(invalid), bad, source="payment-service")
    stage.say(f"  emitted {json.dumps(bad)}")
    status = stage.outcome(runs[invalid])
    error = runs[invalid].error or {}
    message = str(error.get("message", "")).splitlines()
    stage.measured(
        f"run {status} at once: {str(error.get('type', '')).rsplit('.', 1)[-1]}, "
        f"attempt {runs[invalid].model.attempt} of the {WORKFLOW_ATTEMPTS} the workflow allows: "
        "a payload the model rejects is never retried"
    )
    for line in message[:3]:
        stage.say(f"    {line}")
    stage.check(status == "failed", f"{invalid}'s run is {status}, not failed.")
    stage.check("EventDataInvalid" in str(error.get("type")), f"{invalid} failed with {error}.")
    stage.check(runs[invalid].model.attempt == 1, f"{invalid}'s run was retried.")

    stage.say(f"\n{missing}: nobody pays")
    result = stage.result(runs[missing], timeout=limit + stage.timeout)
    started = record(runs[missing], "start_payment_processing").recorded_at
    wait = record(runs[missing], payment_event(missing))
    waited = seconds(wait.recorded_at, started)
    timed_out = str((wait.error or {}).get("type", "nothing")).rsplit(".", 1)[-1]
    steps = " -> ".join(
        f"{step.name} ({step.status})"
        for step in Step.objects.filter(run_id=runs[missing].id).order_by("position")
    )
    stage.say(f"  the run returned {shown(result)}")
    stage.measured(f"the wait recorded {timed_out} after {waited:.2f}s; records: {steps}")
    stage.check(result["status"] == "cancelled", f"{missing} was not cancelled: {result}")
    stage.check(timed_out == "EventTimeout", f"{missing}'s wait recorded {timed_out}.")
    stage.check(
        waited >= limit - SLACK, f"{missing} timed out after {waited:.2f}s, before {limit:g}s."
    )


# --- edda-timer -------------------------------------------------------------------------------


@scenario(
    "edda-timer",
    seed=SEED,
    title="Edda's wait_timer: an order waits for its payment on a durable timer",
    order=311,
)
def timer(stage: Stage) -> None:
    """Two orders sleep on a timer; one is paid meanwhile, and only it completes."""
    stage.worker()
    tag = new_tag()
    paid, unpaid = order_id(311, tag), order_id(312, tag)
    window = PAYMENT_WINDOW.total_seconds()
    stage.say(
        f"Two runs of edda.order_with_timeout: create the order, ctx.sleep({window:g}s), "
        "then check the payment (twelve hours at the demo's speed)"
    )
    runs = {order: order_with_timeout.start(order) for order in (paid, unpaid)}
    stage.say(f"  {paid}: {stage.waiting(runs[paid])}")
    stage.measured(f"{runs[paid].status}, held by {held_by(runs[paid])}")
    Payment.objects.create(order_id=paid, transaction_id=f"TXN-{paid}", amount="99.99")
    stage.say(f"  The customer of {paid} pays while its run sleeps; nobody pays for {unpaid}.")

    for order, run in runs.items():
        result = stage.result(run)
        sleep = record(run, "wait-for-payment")
        check = record(run, "check_payment_status")
        slept = seconds(check.recorded_at, sleep.recorded_at)
        stage.say(f"  {order}: {shown(result)}")
        stage.measured(
            f"the check ran {slept:.2f}s after the timer started and found "
            f"{shown(check.get_result())}; claimed by a worker {claims(run)} times"
        )
        stage.check(slept >= window - SLACK, f"{order}'s timer ended after {slept:.2f}s.")
        stage.check(claims(run) == 2, f"{order}'s run was claimed {claims(run)} times, not 2.")
        expected = "completed" if order == paid else "cancelled"
        stage.check(result["status"] == expected, f"{order} ended {result}, not {expected}.")


# --- edda-many-waiting ------------------------------------------------------------------------


@scenario(
    "edda-many-waiting",
    seed=SEED,
    title="Edda's process releasing: one worker process serves fifty waiting runs",
    order=312,
)
def many_waiting(stage: Stage) -> None:
    """Fifty loan applications wait at once; one worker with four threads serves them all."""
    proc = stage.workers.start(
        "--queue", LOANS_QUEUE, "--concurrency", str(LOAN_WORKER_CONCURRENCY)
    )
    number = stage.workers.number(proc)
    stage.say(
        f"Started worker {number} (pid {proc.pid}) on queue {LOANS_QUEUE} with concurrency "
        f"{LOAN_WORKER_CONCURRENCY}; log: {stage.workers.log_path(number)}"
    )
    try:
        serve_fifty(stage, proc)
    finally:
        code = stage.workers.terminate(proc)
        stage.say(f"SIGTERM sent to worker {number}: it exited ({code=}).")


def serve_fifty(stage: Stage, proc: subprocess.Popen[bytes]) -> None:
    tag = new_tag()
    registered = WorkerProcess.objects.filter(pid=proc.pid, stopped_at__isnull=True)
    stage.until(registered.exists, f"worker pid {proc.pid} to register")
    worker = registered.latest("started_at")
    applications = [f"LOAN-{number}-{tag}" for number in range(320, 320 + APPLICATIONS)]
    stage.say(
        f"{APPLICATIONS} loan applications ({applications[0]} ... {applications[-1]}): "
        f"each run submits for review, then waits up to {DECISION_TIMEOUT.total_seconds():g}s "
        "(48 hours at the demo's speed) for loan.approved:<application>"
    )
    began = time.monotonic()
    queued = loan_approval_workflow.using(queue=LOANS_QUEUE)
    with transaction.atomic():
        runs = [queued.start(application) for application in applications]
    ids = [run.id for run in runs]
    mine = Run.objects.filter(pk__in=ids)

    def all_waiting() -> bool:
        return mine.filter(status="waiting").count() == len(ids)

    stage.until(all_waiting, f"{len(ids)} runs to wait")
    took = time.monotonic() - began
    waiting = mine.filter(status="waiting").count()
    held = Run.objects.filter(claimed_by=worker.id, status="running").count()
    alive = [
        found
        for found in WorkerProcess.objects.filter(
            stopped_at__isnull=True, last_seen_at__gte=timezone.now() - ALIVE_WITHIN
        )
        if LOANS_QUEUE in found.queues
    ]
    stage.measured(f"{waiting} runs waiting, {took:.2f}s after they were started")
    stage.measured(
        f"worker processes alive on {LOANS_QUEUE}: {len(alive)} "
        f"({', '.join(f'pid {found.pid}, concurrency {found.concurrency}' for found in alive)})"
    )
    stage.measured(f"runs that worker holds now: {held}")
    stage.check(waiting == len(ids), f"Only {waiting} of {len(ids)} runs waited at once.")
    stage.check([found.pid for found in alive] == [proc.pid], f"Workers alive: {alive}.")
    stage.check(held == 0, f"The worker holds {held} runs while they all wait.")
    stage.say(
        f"{waiting} runs wait at once on one worker process that executes at most "
        f"{LOAN_WORKER_CONCURRENCY} at a time: a waiting run is a row in the database, "
        "not a thread or a coroutine in the worker."
    )

    # The worker is free: a run whose decision is already there goes straight through.
    extra = f"LOAN-370-{tag}"
    durable.emit_event(decision_event(extra), {"approved": True, "by": "ada"})
    quick = queued.start(extra)
    began = time.monotonic()
    result = stage.result(quick)
    stage.say(
        f"While the {len(ids)} wait, {extra} (its decision emitted before it started) "
        f"runs through the same worker: approved={result['approved']}"
    )
    stage.measured(f"{extra} completed in {time.monotonic() - began:.2f}s, by pid {result['pid']}")

    began = time.monotonic()
    with transaction.atomic():
        for application in applications:
            durable.emit_event(decision_event(application), {"approved": True, "by": "ada"})
    stage.say(f"Emitted the {len(ids)} decisions, one loan.approved:<application> each")
    results = [stage.result(run) for run in runs]
    took = time.monotonic() - began
    pids = sorted({result["pid"] for result in results})
    approved = sum(1 for result in results if result.get("approved"))
    stage.measured(
        f"{approved} of {len(ids)} approved and completed {took:.2f}s after the decisions, "
        f"by {len(pids)} worker process{'es' if len(pids) > 1 else ''} (pid "
        f"{', '.join(map(str, pids))})"
    )
    stage.check(approved == len(ids), f"Only {approved} of {len(ids)} runs were approved.")
    stage.check(pids == [proc.pid], f"The runs were processed by pids {pids}.")
    stage.check(result["pid"] == proc.pid, "The extra run was processed by another worker.")


# --- edda-cloudevents -------------------------------------------------------------------------


@scenario(
    "edda-cloudevents",
    seed=SEED,
    title="Edda's CloudEvents over HTTP: POST durable/events/ resumes the waiting run",
    order=313,
)
def cloudevents(stage: Stage) -> None:
    """Payments posted as CloudEvents (structured, redelivered, binary, malformed)."""
    stage.worker()
    tag = new_tag()
    structured, binary = order_id(380, tag), order_id(381, tag)
    runs = {order: payment_workflow_typed.start(order) for order in (structured, binary)}
    for order, run in runs.items():
        stage.say(f"{order}: {waits_for(stage, run, payment_event(order))}")
    client = payment_service_client()
    url = reverse("django_durable:events")

    cloud_event = {
        "specversion": "1.0",
        "type": "payment.completed",
        "source": "payment-service",
        "subject": structured,  # the event's name becomes type:subject
        "id": f"event-123-{tag}",
        "datacontenttype": "application/json",
        "data": payment(structured),
    }
    stage.say(f"\n{structured}: POST {url}, application/cloudevents+json (structured mode)")
    first = client.post(url, cloud_event, content_type="application/cloudevents+json")
    stage.measured(f"{first.status_code} {json.dumps(first.json())}")
    again = client.post(url, cloud_event, content_type="application/cloudevents+json")
    stage.say("  The payment service delivers the same CloudEvent again (same source and id):")
    stored = Event.objects.filter(name=payment_event(structured))
    stage.measured(
        f"{again.status_code} {json.dumps(again.json())}; events stored: {stored.count()}"
    )
    event = stored.first()
    if event is not None:
        stage.measured(
            f"event #{event.pk}: name {event.name}, source {event.source}, type {event.type}, "
            f"idempotency key {event.idempotency_key}"
        )
    stage.check(first.status_code == 202, f"The CloudEvent got {first.status_code}.")
    stage.check(again.json() == first.json(), "The redelivery emitted another event.")
    stage.check(stored.count() == 1, f"{stored.count()} events were stored for one CloudEvent.")

    stage.say(f"\n{binary}: POST {url}, ce-* headers and the data as the body (binary mode)")
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "payment.completed",
        "ce-source": "payment-service",
        "ce-subject": binary,
        "ce-id": f"event-124-{tag}",
    }
    answer = client.post(url, payment(binary), content_type="application/json", headers=headers)
    stage.measured(f"{answer.status_code} {json.dumps(answer.json())}")
    stage.check(answer.status_code == 202, f"The binary CloudEvent got {answer.status_code}.")

    stage.say("")
    for order, run in runs.items():
        result = stage.result(run)
        stage.say(f"{order}: the run returned {shown(result)}")
        stage.check(result["status"] == "completed", f"{order} did not complete: {result}")
        stage.check(result["source"] == "payment-service", f"{order} received {result}.")

    stage.say(f"\nPOST {url}: a CloudEvent of specversion 0.3")
    before = Event.objects.count()
    with quiet("django.request"):  # Django logs every 400 as a warning
        refused = client.post(
            url, {**cloud_event, "specversion": "0.3"}, content_type="application/cloudevents+json"
        )
    stage.measured(
        f"{refused.status_code} {json.dumps(refused.json())}; events stored: "
        f"{Event.objects.count() - before} (a 400 is not worth retrying)"
    )
    stage.check(refused.status_code == 400, f"The bad CloudEvent got {refused.status_code}.")


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Silence ``logger``'s warnings for the duration of the block."""
    found = logging.getLogger(logger)
    level = found.level
    found.setLevel(logging.ERROR)
    try:
        yield
    finally:
        found.setLevel(level)


def payment_service_client() -> Client:
    """Return a test client logged in as the payment service, which may emit events."""
    user, _ = get_user_model().objects.get_or_create(username="payment-service")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="django_durable", codename="add_event")
    )
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    return client
