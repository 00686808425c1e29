"""Examples 09 and 10: child workflows; nesting, parallel children, a failing child."""

from __future__ import annotations

import itertools
import json

import django_durable as durable
from example_project.demos.registry import scenario
from example_project.demos.stage import Stage

from ..workflows import child_patterns, child_workflows
from . import measure
from .measure import plural


@scenario(
    "pyworkflow-children",
    seed=measure.seed("09_child_workflows.py"),
    title="pyworkflow 09: an order fulfilled by child workflows, one fire-and-forget",
    order=409,
)
def order_with_children(stage: Stage) -> None:
    """Run order_fulfillment_workflow; list its children as ``durable runs children`` does."""
    stage.worker()
    order_id = measure.unique("order")
    parent = child_workflows.order_fulfillment_workflow.start(
        order_id, 149.99, "customer@example.com"
    )
    stage.say(f"order_fulfillment_workflow({order_id!r}, 149.99, ...): run {parent.id}")
    result = stage.result(parent)
    notification = durable.get_run(result["notification_run_id"])
    stage.result(notification)
    stage.say(f"  python manage.py durable runs children {parent.id}:")
    stage.say(measure.indented(measure.durable_command("runs", "children", parent.id)))
    children = parent.children()
    names = [
        child.workflow_name.removeprefix("pyworkflow.child_demo_").removesuffix("_workflow")
        for child in children
    ]
    statuses = [str(child.status) for child in children]
    run = measure.row(parent)
    waited_for = [step.name for step in measure.records(parent.id, "child_result")]
    began = measure.row(notification).started_at
    lag = (began - run.finished_at).total_seconds() if began and run.finished_at else 0.0
    stage.measured(
        f"{plural(len(children), 'child run')}, each with its own id and records: "
        + ", ".join(f"{name} {status}" for name, status in zip(names, statuses, strict=True))
    )
    stage.measured(
        f"the parent waited for {plural(len(waited_for), 'child', 'children')} (payment, "
        f"shipping), suspended: claimed {plural(run.lease_token, 'time')}; not for the "
        f"notification, which started {abs(lag):.3f}s {'after' if lag >= 0 else 'before'} "
        "its parent completed, and went on alone (parent_close='abandon')"
    )
    stage.measured(f"result: {json.dumps(result)}")
    stage.check(
        [child.workflow_name for child in children]
        == [
            child_workflows.payment_workflow.name,
            child_workflows.shipping_workflow.name,
            child_workflows.notification_workflow.name,
        ],
        f"children {[child.workflow_name for child in children]}",
    )
    stage.check(statuses == ["completed"] * 3, f"children {statuses}")
    stage.check(children[-1].id == notification.id, "the notification is not the third child")
    stage.check(
        waited_for == [children[0].id, children[1].id],
        f"the parent waited for {waited_for}, not for payment and shipping alone",
    )
    stage.check(
        result["payment"]["paid"] and result["shipping"]["shipped"] and run.lease_token >= 3,
        f"result {result}, claimed {run.lease_token} times",
    )


@scenario(
    "pyworkflow-patterns",
    seed=measure.seed("10_child_workflow_patterns.py"),
    title="pyworkflow 10: child patterns: three levels deep, three in parallel, one failing",
    order=410,
)
def child_patterns_demo(stage: Stage) -> None:
    """Run the seed's three demos at once: nested, parallel, error handling."""
    stage.worker()
    nested = child_patterns.level_1_workflow.start()
    parallel = child_patterns.parallel_parent_workflow.start()
    failing = child_patterns.error_handling_parent_workflow.start()
    for handle in (nested, parallel, failing):
        stage.say(f"{handle.workflow_name}(): run {handle.id}")
    check_nested(stage, nested, stage.result(nested))
    check_parallel(stage, parallel, stage.result(parallel))
    check_failing(stage, failing, stage.result(failing))


def check_nested(stage: Stage, handle: durable.RunHandle, result: dict) -> None:
    """Follow parent -> child -> grandchild; check their depths and the nested result."""
    chain = [measure.row(handle)]
    while children := list(chain[-1].children.order_by("parent_position")):
        chain.extend(children)
    depths = [run.depth for run in chain]
    stage.measured(
        "nested: "
        + measure.names(
            f"{run.workflow_name.split('_demo_')[-1]} (depth {run.depth})" for run in chain
        )
        + f"; result {json.dumps(result)}"
    )
    stage.check(depths == [0, 1, 2], f"depths {depths}")
    stage.check(
        result
        == {
            "level1": True,
            "child": {
                "level2": "nested-task",
                "grandchild": {"name": "level3-nested-task", "completed": True},
            },
        },
        f"nested result {result}",
    )


def check_parallel(stage: Stage, handle: durable.RunHandle, result: dict) -> None:
    """Check that the three children ran side by side: quicker than one after the other."""
    children = [measure.row(child) for child in handle.children()]
    starts = [run.started_at for run in children if run.started_at]
    ends = [run.finished_at for run in children if run.finished_at]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    work = sum(0.1 * (i + 1) for i in range(len(children)))
    stage.measured(
        f"parallel: {plural(len(children), 'child run')} did {work:.1f}s of work in {wall:.2f}s "
        f"from the first start to the last end; ctx.gather returned "
        f"{[item['task_id'] for item in result['results']]} in the order they were started"
    )
    stage.check(result["children_count"] == 3 == len(ends), f"parallel result {result}")
    # Side by side: some child began before another had ended (timed by the database, so a
    # loaded machine that makes them slower does not make them look serial).
    spans = sorted((run.started_at, run.finished_at) for run in children if run.finished_at)
    overlapped = any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
    stage.check(overlapped, f"the children took {wall:.2f}s: they ran one after the other")
    stage.check(
        [item["task_id"] for item in result["results"]] == ["task-0", "task-1", "task-2"],
        f"parallel results {result['results']}",
    )


def check_failing(stage: Stage, handle: durable.RunHandle, result: dict) -> None:
    """Check that the parent caught its child's failure and completed."""
    child = durable.get_run(result.get("child_run_id") or handle.children()[0].id)
    stage.measured(
        f"error handling: child {child.status} ({result.get('error_type')}: "
        f"{result.get('error')}); the parent caught ChildWorkflowFailed and "
        f"{handle.refresh().status}"
    )
    stage.check(
        result.get("status") == "child_failed"
        and result.get("error") == "This step always fails!"
        and child.status == durable.RunStatus.FAILED,
        f"error handling result {result}, child {child.status}",
    )
