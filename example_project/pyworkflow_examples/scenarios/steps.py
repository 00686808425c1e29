"""Examples 01 to 05: steps, sleeps, retries, batches, idempotency keys."""

from __future__ import annotations

import json

import django_durable as durable
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage

from ..workflows import basic, batch, idempotency, long_running, retries
from . import measure
from .measure import plural


@scenario(
    "pyworkflow-basic",
    seed=measure.seed("01_basic_workflow.py"),
    title="pyworkflow 01: a three-step order, each step checkpointed",
    order=401,
)
def basic_workflow(stage: Stage) -> None:
    """Run order_workflow; show its recorded steps as ``durable runs steps`` prints them."""
    stage.worker()
    order_id = measure.unique("order")
    handle = basic.order_workflow.start(order_id, 99.99)
    stage.say(f"order_workflow({order_id!r}, 99.99): run {handle.id}")
    result = stage.result(handle)
    run = measure.row(handle)
    names = measure.step_names(handle.id)
    bodies = measure.executions([handle.id])
    stage.say(f"  python manage.py durable runs steps {handle.id}  (pyworkflow runs logs):")
    stage.say(measure.indented(measure.durable_command("runs", "steps", handle.id)))
    stage.measured(
        f"completed in {measure.seconds(run):.2f}s; recorded {measure.names(names)}; "
        f"{plural(len(bodies), 'step body', 'step bodies')} executed, each once"
    )
    stage.measured(f"result: {json.dumps(result)}")
    stage.check(
        names == ["validate_order", "process_payment", "send_confirmation"],
        f"recorded steps {names}",
    )
    stage.check(len(bodies) == 3, f"{len(bodies)} step bodies executed, expected 3")
    stage.check(
        result
        == {"order_id": order_id, "valid": True, "paid": True, "amount": 99.99}
        | {"confirmed": True},
        f"result {result}",
    )


@scenario(
    "pyworkflow-onboarding",
    seed=measure.seed("02_long_running.py"),
    title="pyworkflow 02: onboarding emails, with durable sleeps between them",
    order=402,
)
def onboarding(stage: Stage) -> None:
    """Run the onboarding; measure the sleeps, the claims and the gaps between the emails."""
    stage.worker()
    user_id = measure.unique("user")
    pause = long_running.BETWEEN_EMAILS.total_seconds()
    handle = long_running.onboarding_workflow.start(user_id)
    stage.say(
        f"onboarding_workflow({user_id!r}): run {handle.id}; the seed's 30 s sleeps "
        f"take {pause:.1f}s at the demo's speed"
    )
    result = stage.result(handle)
    run = measure.row(handle)
    sleeps = measure.records(handle.id, "sleep")
    emails = measure.executions([handle.id])
    waited = measure.gaps(emails)
    stage.measured(
        f"emails sent: {measure.names(row.step for row in emails)}, "
        f"{' s and '.join(f'{gap:.2f}' for gap in waited)} s apart"
    )
    stage.measured(
        f"{plural(len(sleeps), 'sleep')} recorded ({', '.join(s.name for s in sleeps)}); the run "
        f"was claimed {plural(run.lease_token, 'time')}: it suspended at each sleep, "
        "freeing its worker, and a worker resumed it when the time came"
    )
    stage.check(result.get("survey_sent") is True, f"result {result}")
    stage.check(
        len(emails) == 3 and len(sleeps) == 2, f"{len(emails)} emails, {len(sleeps)} sleeps"
    )
    stage.check(all(gap >= pause for gap in waited), f"emails {waited} s apart, less than {pause}s")
    stage.check(run.lease_token >= 3, f"claimed {run.lease_token} times: it never suspended")


@scenario(
    "pyworkflow-retries",
    seed=measure.seed("03_retries.py"),
    title="pyworkflow 03: a flaky API: RetryableError, FatalError, exponential backoff",
    order=403,
)
def retrying(stage: Stage) -> None:
    """Call three endpoints: busy twice, timing out three times, and invalid; measure waits."""
    stage.worker()
    runs = {
        endpoint: retries.retry_demo_workflow.start(endpoint) for endpoint in retries.API_ANSWERS
    }
    for endpoint, handle in runs.items():
        answers = ", ".join(retries.API_ANSWERS[endpoint])
        stage.say(f"retry_demo_workflow({endpoint!r}): run {handle.id}; the API answers {answers}")
    outcomes = {endpoint: stage.outcome(handle) for endpoint, handle in runs.items()}
    expected_waits = {
        "/api/data": [retries.RETRY_AFTER] * 2,
        "/api/slow": [retries.API_RETRY.delay(n) for n in (1, 2, 3)],
        "/api/invalid": [],
    }
    for endpoint, handle in runs.items():
        calls = measure.executions([handle.id], "flaky_api_call")
        waited = measure.gaps(calls)
        planned = expected_waits[endpoint]
        text = f"{endpoint}: {outcomes[endpoint]} after {plural(len(calls), 'attempt')}"
        if waited:
            text += (
                f"; waited {', '.join(f'{gap:.2f}' for gap in waited)} s between them "
                f"(planned {', '.join(f'{wait:.1f}' for wait in planned)} s)"
            )
        if outcomes[endpoint] == durable.RunStatus.FAILED:
            error = handle.refresh().error or {}
            text += f": {error.get('type', '').rsplit('.', 1)[-1]}: {error.get('message')}"
        stage.measured(text)
        stage.check(len(waited) == len(planned), f"{endpoint}: {len(calls)} attempts")
        # A retry never comes before its wait is over (the worker's polling adds a little).
        stage.check(
            all(gap >= wait - 0.01 for gap, wait in zip(waited, planned, strict=True)),
            f"{endpoint}: retried after {waited} s, sooner than {planned}",
        )
    stage.check(
        outcomes == {"/api/data": "completed", "/api/slow": "completed", "/api/invalid": "failed"},
        f"outcomes {outcomes}",
    )
    processed = measure.executions([handle.id for handle in runs.values()], "process_response")
    stage.measured(
        f"process_response ran {plural(len(processed), 'time')}: once per run that got an "
        "answer; the FatalError was never retried, though 4 attempts were allowed"
    )
    stage.check(len(processed) == 2, f"process_response ran {len(processed)} times")


@scenario(
    "pyworkflow-batch",
    seed=measure.seed("04_batch_processing.py"),
    title="pyworkflow 04: a batch, each item processed as a step of its own",
    order=404,
)
def batch_processing(stage: Stage) -> None:
    """Run batch_workflow with limit=5; count the steps it recorded."""
    stage.worker()
    batch_id = measure.unique("batch")
    handle = batch.batch_workflow.start(batch_id, limit=5)
    stage.say(f"batch_workflow({batch_id!r}, limit=5): run {handle.id}")
    result = stage.result(handle)
    names = measure.step_names(handle.id)
    items = names.count("process_item")
    stage.measured(
        f"{plural(len(names), 'step')} recorded: fetch_batch_items, process_item x{items}, "
        f"{names[-1] if names else '-'}"
    )
    stage.measured(f"result: {json.dumps(result)}")
    stage.check(
        names == ["fetch_batch_items", *["process_item"] * 5, "aggregate_results"],
        f"recorded steps {names}",
    )
    stage.check(
        result == {"batch_id": batch_id, "total": 5, "successful": 5, "failed": 0},
        f"result {result}",
    )


@scenario(
    "pyworkflow-idempotency",
    seed=measure.seed("05_idempotency.py"),
    title="pyworkflow 05: a payment started three times with one key, charged once",
    order=405,
)
def idempotent_payment(stage: Stage) -> None:
    """Start one payment from Python, the CLI and Python again, with one key; count charges."""
    stage.worker()
    payment_id = measure.unique("pay")
    key = f"payment-{payment_id}"
    workflow = idempotency.payment_workflow
    first = workflow.using(idempotency_key=key).start(payment_id, 99.99)
    stage.say(f"payment_workflow({payment_id!r}, 99.99), idempotency key {key!r}: run {first.id}")
    args = json.dumps([payment_id, 99.99])
    cli = measure.durable_command("start", workflow.name, "--args", args, "--idempotency-key", key)
    stage.say(f"  again at once, with the CLI: durable start ... --idempotency-key {key}")
    stage.say(measure.indented(cli))
    stage.result(first)
    late = durable.start(workflow.name, args=(payment_id, 199.99), idempotency_key=key)
    stage.say(f"  once it completed, with 199.99 by mistake: run {late.id}")
    result = stage.result(late)
    runs = durable.list_runs(workflow=workflow.name, idempotency_key=key)
    charges = measure.executions([first.id], "charge_payment")
    stage.measured(
        f"3 starts with key {key!r}: {plural(len(runs), 'run')} in the database "
        f"({len({first.id, cli.strip(), late.id})} distinct id)"
    )
    stage.measured(
        f"charge_payment executed {plural(len(charges), 'time')}; charged "
        f"${result['amount']:.2f} (the 199.99 start stored nothing)"
    )
    stage.check(cli.strip() == first.id == late.id, f"runs {first.id}, {cli}, {late.id}")
    stage.check(len(runs) == 1, f"{len(runs)} runs with the key {key}")
    stage.check(len(charges) == 1, f"charged {len(charges)} times")
    stage.check(result["amount"] == 99.99 and result["receipt_sent"], f"result {result}")
