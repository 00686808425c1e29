"""Examples 07 and 08: runs resumed from outside (hooks), and cancelled."""

from __future__ import annotations

import json

import django_durable as durable
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage
from example_project.demos.timing import scaled

from ..workflows import cancellation, hooks
from . import measure


def waited(run_id: str, kind: str) -> float:
    """Return the seconds from the run's first step to the end of its first wait of ``kind``."""
    first = measure.records(run_id, "step")[0]
    wait = measure.records(run_id, kind)[0]
    return (wait.recorded_at - first.recorded_at).total_seconds()


@scenario(
    "pyworkflow-hooks",
    seed=measure.seed("07_hooks.py"),
    title="pyworkflow 07: hooks: runs wait for an external callback, which resumes them",
    order=407,
)
def external_callbacks(stage: Stage) -> None:
    """Four runs wait; an event, the CLI and messages resume three; one times out."""
    stage.worker()
    ids = {name: measure.unique("order") for name in ("approved", "rejected", "multi", "silent")}
    runs = {
        "approved": hooks.approval_workflow.start(ids["approved"]),
        "rejected": hooks.approval_workflow.start(ids["rejected"]),
        "multi": hooks.multi_approval_workflow.start(ids["multi"]),
        "silent": hooks.simple_approval_workflow.start(ids["silent"]),
    }
    for name, handle in runs.items():
        stage.say(f"{handle.workflow_name}({ids[name]!r}): {stage.waiting(handle)}")
    held = [run for run in runs.values() if measure.row(run).claimed_by]
    stage.measured(
        f"{len(runs)} runs waiting at once, {len(held)} of them held by a worker: "
        "a waiting run is a row in the database, not a busy worker"
    )
    stage.check(not held, f"{len(held)} waiting runs still held by a worker")

    # The multi-approval run first: its manager wait is the shortest (24 hours: 2 s).
    multi = runs["multi"]
    multi.send({"approved": True, "approver": "manager@example.com"}, topic="manager_approval")
    stage.say("Python: run.send({...manager...}, topic='manager_approval')")
    stage.until(
        lambda: "finance_approval" in measure.row(multi).waiting_for, "the finance approval wait"
    )
    stage.say(f"  then the run says: {stage.where(multi)}")
    finance = json.dumps({"approved": True, "approver": "finance@example.com"})
    measure.durable_command("send", multi.id, finance, "--topic", "finance_approval")
    stage.say(f"CLI: durable send {multi.id} '{finance}' --topic finance_approval")

    approval = {"approved": True, "reviewer": "admin@example.com"}
    durable.emit_event(hooks.approval_event(ids["approved"]), approval)
    stage.say(f"Python: durable.emit_event('manager_approval:...', {json.dumps(approval)})")
    rejection = {"approved": False, "reviewer": "cfo@example.com", "comments": "Over budget"}
    cli = measure.durable_command(
        "emit", hooks.approval_event(ids["rejected"]), json.dumps(rejection)
    )
    stage.say(f"CLI: durable emit manager_approval:... '{json.dumps(rejection)}'")
    stage.say(measure.indented(cli))

    results = {name: stage.result(handle) for name, handle in runs.items()}
    report_hooks(stage, runs, results)


def report_hooks(
    stage: Stage, runs: dict[str, durable.RunHandle], results: dict[str, dict]
) -> None:
    """Print how each run ended and how long it waited; check what the seed shows."""
    for name, handle in runs.items():
        result = results[name]
        kind = "event" if handle.workflow_name == hooks.approval_workflow.name else "recv"
        detail = result.get("reviewer") or result.get("reason") or result.get("finance_reviewer")
        stage.measured(
            f"{name}: {result['status']} ({detail}); resumed {waited(handle.id, kind):.2f}s "
            "after it began to wait"
        )
    timeout = scaled(hours=24).total_seconds()
    stage.measured(
        f"silent: nobody answered within the seed's 24 hours ({timeout:.0f}s at the demo's "
        "speed): ctx.recv returned its default"
    )
    stage.check(
        results["approved"]["status"] == "fulfilled"
        and results["approved"]["reviewer"] == "admin@example.com",
        f"approved: {results['approved']}",
    )
    stage.check(
        results["rejected"]
        == results["rejected"] | {"status": "cancelled", "reason": "Over budget"},
        f"rejected: {results['rejected']}",
    )
    stage.check(
        results["multi"].get("manager") == "manager@example.com"
        and results["multi"].get("finance_reviewer") == "finance@example.com"
        and results["multi"]["status"] == "fulfilled",
        f"multi: {results['multi']}",
    )
    stage.check(
        results["silent"]["status"] == "cancelled"
        and results["silent"]["reason"] == hooks.NO_ANSWER["reason"]
        and waited(runs["silent"].id, "recv") >= timeout,
        f"silent: {results['silent']}",
    )


@scenario(
    "pyworkflow-cancel",
    seed=measure.seed("08_cancellation.py"),
    title="pyworkflow 08: a sleeping order cancelled; its cleanup runs in ctx.shield()",
    order=408,
)
def cancelled_order(stage: Stage) -> None:
    """Cancel a sleeping order with the CLI, and a plain sleeping run; check the cleanup."""
    stage.worker()
    order_id = measure.unique("order")
    order = cancellation.cancellable_order_workflow.start(order_id)
    plain = cancellation.cancel_demo_simple_workflow.start(measure.unique("data"))
    stage.say(f"cancellable_order_workflow({order_id!r}): {stage.waiting(order)}")
    stage.say(f"cancel_demo_simple_workflow(...): {stage.waiting(plain)}")
    reason = "Customer cancelled"
    wait = str(int(stage.timeout))
    out = measure.durable_command("runs", "cancel", order.id, "--reason", reason, "--wait", wait)
    stage.say(f"CLI: durable runs cancel {order.id} --reason {reason!r} --wait {wait}")
    stage.say(measure.indented(out))
    durable.cancel(plain.id, reason="Not needed")
    stage.say(f"Python: durable.cancel({plain.id!r}, reason='Not needed')")
    outcomes = [stage.outcome(order), stage.outcome(plain)]

    run = measure.row(order)
    recorded = [step.name for step in measure.records(order.id)]
    bodies = measure.executions([order.id])
    cleanup = [body for body in bodies if body.text.startswith("[Cleanup]")]
    asked = run.cancel_requested_at
    after = asked is not None and all(body.created_at >= asked for body in cleanup)
    stage.measured(
        f"order: {run.status} ({run.error and run.error.get('message')}) "
        f"{measure.seconds(run):.1f}s after it started, in a 60 s sleep; "
        f"recorded {measure.names(recorded)}"
    )
    stage.measured(
        f"cleanup: {measure.names(body.step for body in cleanup)} executed after the "
        f"cancellation, inside ctx.shield(); steps executed in all: "
        f"{measure.names(body.step for body in bodies)}"
    )
    plain_records = [step.kind for step in measure.records(plain.id)]
    stage.measured(f"plain run: {outcomes[1]}, recorded {measure.names(plain_records)}, no cleanup")
    stage.check(outcomes == ["cancelled", "cancelled"], f"outcomes {outcomes}")
    stage.check(
        [body.step for body in bodies]
        == ["reserve_inventory", "release_inventory", "refund_payment"]
        and after,
        f"executed {[(body.step, body.created_at) for body in bodies]}, "
        f"cancel asked at {run.cancel_requested_at}",
    )
    stage.check((run.error or {}).get("message") == reason, f"error {run.error}")
    stage.check(plain_records == ["sleep", "cancel"], f"plain run recorded {plain_records}")
    stage.check(measure.seconds(run) < 30, f"the order ran {measure.seconds(run):.1f}s")
