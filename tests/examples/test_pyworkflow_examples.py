"""pyworkflow's Celery examples (seed 004) in the example project: ``manage.py demo pyworkflow-*``.

The ten scenarios run as a user runs them, in one ``manage.py demo`` with real workers, on
SQLite and on PostgreSQL; each checks what the seed promises and says what it measured.
The tests then read the demo's database themselves (every run, its records, and each
execution of a step body with its process) and check the outcome against the seed.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.examples.conftest import demo, passed
from tests.test_example_project import manage

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "example_project" / "pyworkflow_examples"
# The scenarios in the seed's order, 01 to 10.
NAMES = (
    "pyworkflow-basic",
    "pyworkflow-onboarding",
    "pyworkflow-retries",
    "pyworkflow-batch",
    "pyworkflow-idempotency",
    "pyworkflow-worker-lost",
    "pyworkflow-hooks",
    "pyworkflow-cancel",
    "pyworkflow-children",
    "pyworkflow-patterns",
)
SEED_FILES = (
    "01_basic_workflow.py",
    "02_long_running.py",
    "03_retries.py",
    "04_batch_processing.py",
    "05_idempotency.py",
    "06_fault_tolerance.py",
    "07_hooks.py",
    "08_cancellation.py",
    "09_child_workflows.py",
    "10_child_workflow_patterns.py",
)

# Run by ``manage.py shell`` on the demo's database: every run of the examples, as JSON.
DUMP = """
import itertools
import json
from django_durable.models import Run, Step
from example_project.pyworkflow_examples.models import BodyExecution

runs = []
for run in Run.objects.filter(workflow_name__startswith="pyworkflow.").order_by("created_at", "id"):
    steps = Step.objects.filter(run_id=run.id).order_by("position")
    bodies = BodyExecution.objects.filter(run_id=str(run.id)).order_by("created_at", "id")
    runs.append({
        "id": str(run.id),
        "workflow": run.workflow_name.removeprefix("pyworkflow."),
        "status": run.status,
        "args": run.input.get("args", []),
        "result": run.result,
        "error": run.error and [run.error["type"].rsplit(".", 1)[-1], run.error["message"]],
        "idempotency_key": run.idempotency_key,
        "parent": run.parent_id and str(run.parent_id),
        "depth": run.depth,
        "parent_close": run.parent_close,
        "claims": run.lease_token,
        "span": [run.started_at and run.started_at.isoformat(),
                 run.finished_at and run.finished_at.isoformat()],
        "records": [[step.kind, step.name, step.status] for step in steps],
        "bodies": [[body.step, body.attempt, body.pid] for body in bodies],
    })
print(json.dumps(runs))
"""


@pytest.fixture(scope="module")
def output(demo_env, tmp_path_factory):
    """Run the ten scenarios once; return what the command printed."""
    ran = demo(demo_env, *NAMES, log_dir=tmp_path_factory.mktemp("pyworkflow-logs"))
    for name in NAMES:
        passed(ran, name)
    return ran.stdout


@pytest.fixture(scope="module")
def runs(demo_env, output) -> dict[str, list[dict[str, Any]]]:
    """Return the demo's runs by workflow name, oldest first, read from its database."""
    dumped = manage(demo_env, "shell", "--verbosity", "0", "--command", DUMP)
    assert dumped.returncode == 0, dumped.stderr
    found: dict[str, list[dict[str, Any]]] = {}
    for run in json.loads(dumped.stdout.splitlines()[-1]):
        found.setdefault(run["workflow"], []).append(run)
    return found


def only(runs: dict[str, list[dict[str, Any]]], workflow: str) -> dict[str, Any]:
    """Return the one run of ``workflow`` the demo started."""
    assert len(runs.get(workflow, [])) == 1, runs.get(workflow)
    return runs[workflow][0]


def steps(run: dict[str, Any]) -> list[str]:
    """Return the names of the run's step records, in order."""
    return [name for kind, name, _ in run["records"] if kind == "step"]


def bodies(run: dict[str, Any]) -> list[str]:
    """Return the steps whose bodies the run executed, once per execution, in order."""
    return [step for step, _, _ in run["bodies"]]


def test_each_of_the_ten_examples_is_a_scenario_of_its_own(output):
    headings = re.findall(r"\n(\d+)\. pyworkflow (\d\d): .*\n   from (.*)\n", output)
    assert [(number, seed) for number, _, seed in headings] == [
        (str(n), f"pyworkflow: the Celery durable examples, {file} (seeds/004)")
        for n, file in enumerate(SEED_FILES, 1)
    ]
    assert [example for _, example, _ in headings] == [f"{n:02}" for n in range(1, 11)]
    assert "10 of 10 scenarios as their seeds show" in output


def test_01_three_steps_each_checkpointed_and_executed_once(runs, output):
    run = only(runs, "order_workflow")
    assert run["status"] == "completed"
    assert run["records"] == [
        ["step", "validate_order", "completed"],
        ["step", "process_payment", "completed"],
        ["step", "send_confirmation", "completed"],
    ]
    assert bodies(run) == ["validate_order", "process_payment", "send_confirmation"]
    order_id = run["args"][0]
    assert run["result"] == {
        "order_id": order_id,
        "valid": True,
        "paid": True,
        "amount": 99.99,
        "confirmed": True,
    }
    # The scenario shows the records as ``durable runs steps`` prints them.
    assert re.search(r"\n +2 +step +send_confirmation +completed +1 ", output)


def test_02_the_run_sleeps_suspended_between_the_emails(runs, output):
    run = only(runs, "onboarding_workflow")
    assert run["status"] == "completed" and run["result"]["survey_sent"] is True
    assert [kind for kind, _, _ in run["records"]] == ["step", "sleep", "step", "sleep", "step"]
    assert bodies(run) == ["send_welcome_email", "send_tips_email", "send_survey_email"]
    # Claimed to start and once after each sleep: it held no worker while it slept.
    assert run["claims"] >= 3
    apart = re.search(r"send_survey_email, (\d+\.\d\d) s and (\d+\.\d\d) s apart", output)
    assert apart and all(float(gap) >= 0.1 for gap in apart.groups()), output


def test_03_retryable_errors_wait_fatal_errors_fail_at_once(runs, output):
    by_endpoint = {run["args"][0]: run for run in runs["retry_demo_workflow"]}
    assert {endpoint: run["status"] for endpoint, run in by_endpoint.items()} == {
        "/api/data": "completed",
        "/api/slow": "completed",
        "/api/invalid": "failed",
    }
    # Each attempt of the body is a row: attempts numbered from 1, then the response.
    calls = {
        endpoint: [attempt for step, attempt, _ in run["bodies"] if step == "flaky_api_call"]
        for endpoint, run in by_endpoint.items()
    }
    assert calls == {"/api/data": [1, 2, 3], "/api/slow": [1, 2, 3, 4], "/api/invalid": [1]}
    assert [bodies(run).count("process_response") for run in by_endpoint.values()] == [1, 1, 0]
    assert by_endpoint["/api/invalid"]["error"] == [
        "FatalError",
        "API returned invalid response - cannot retry",
    ]
    assert by_endpoint["/api/data"]["result"]["message"] == "API call and processing succeeded"
    # The exponential backoff: each wait at least the one planned (0.2 s, 0.4 s, 0.8 s).
    waits = re.search(r"/api/slow: completed after 4 attempts; waited (.*) s between", output)
    assert waits, output
    waited = [float(gap) for gap in waits[1].split(", ")]
    planned = [0.2, 0.4, 0.8]
    assert len(waited) == 3 and min(map(float.__sub__, waited, planned)) >= 0, waited


def test_04_each_item_of_the_batch_is_a_step_of_its_own(runs):
    run = only(runs, "batch_workflow")
    assert steps(run) == ["fetch_batch_items", *["process_item"] * 5, "aggregate_results"]
    assert run["result"] == {
        "batch_id": run["args"][0],
        "total": 5,
        "successful": 5,
        "failed": 0,
    }


def test_05_three_starts_with_one_key_make_one_run_and_one_charge(runs, output):
    run = only(runs, "payment_workflow")
    payment_id = run["args"][0]
    assert run["idempotency_key"] == f"payment-{payment_id}"
    assert run["args"] == [payment_id, 99.99]  # the start with 199.99 stored nothing
    assert Counter(bodies(run)) == {"validate_payment": 1, "charge_payment": 1, "send_receipt": 1}
    assert run["result"]["transaction_id"] == f"txn_{payment_id}"
    assert run["result"]["amount"] == 99.99
    assert f"3 starts with key 'payment-{payment_id}': 1 run in the database" in output


def test_06_a_killed_worker_s_run_is_finished_by_another(runs, output):
    run = only(runs, "data_pipeline")
    assert run["status"] == "completed"
    assert run["result"]["loaded"] is True and run["result"]["notified"] is True
    pids = [pid for _, _, pid in run["bodies"]]
    first, second = pids[0], pids[-1]
    assert first != second
    assert [(step, pid) for step, _, pid in run["bodies"]] == [
        ("fetch_data", first),
        ("validate_data", first),
        ("transform_data", first),  # killed in it: it left no result
        ("transform_data", second),
        ("load_data", second),
        ("send_notification", second),
    ]
    assert steps(run) == [
        "fetch_data",
        "validate_data",
        "transform_data",
        "load_data",
        "send_notification",
    ]
    assert re.search(r"transform_data +executed by worker \d+ \(pid \d+\), then worker", output)
    takeover = re.search(r"resumed the run (\d+\.\d)s after the kill \(2s lease\)", output)
    assert takeover and float(takeover[1]) < 10, output


def test_07_runs_wait_for_callbacks_and_one_times_out(runs, output):
    assert "= 4 runs waiting at once, 0 of them held by a worker" in output
    approved, rejected = runs["approval_workflow"]
    assert approved["result"]["status"] == "fulfilled"
    assert approved["result"]["reviewer"] == "admin@example.com"
    assert [rejected["result"][key] for key in ("status", "reason")] == ["cancelled", "Over budget"]
    assert [kind for kind, _, _ in approved["records"]] == ["step", "event", "step"]
    multi = only(runs, "multi_approval_workflow")
    assert [name for kind, name, _ in multi["records"] if kind == "recv"] == [
        "manager_approval",
        "finance_approval",
    ]
    assert [multi["result"][key] for key in ("status", "manager", "finance_reviewer")] == [
        "fulfilled",
        "manager@example.com",
        "finance@example.com",
    ]
    silent = only(runs, "simple_approval_workflow")
    assert silent["result"]["status"] == "cancelled"
    assert silent["result"]["reason"] == "No answer in time"
    assert bodies(silent) == ["prepare_order", "cancel_order"]


def test_08_a_cancelled_order_runs_its_cleanup_and_nothing_else(runs):
    order = only(runs, "cancellable_order_workflow")
    assert order["status"] == "cancelled"
    assert order["error"][1] == "Customer cancelled"
    assert [[kind, name] for kind, name, _ in order["records"]] == [
        ["step", "reserve_inventory"],
        ["sleep", "wait-for-approval"],
        ["cancel", "cancel"],
        ["step", "release_inventory"],
        ["step", "refund_payment"],
    ]
    # Never charged nor shipped; the compensation ran once, inside ctx.shield().
    assert bodies(order) == ["reserve_inventory", "release_inventory", "refund_payment"]
    plain = only(runs, "cancel_demo_simple_workflow")
    assert plain["status"] == "cancelled" and plain["error"][1] == "Not needed"
    assert [kind for kind, _, _ in plain["records"]] == ["sleep", "cancel"]
    assert plain["bodies"] == []


def test_09_an_order_fulfilled_by_child_runs(runs):
    parent = only(runs, "order_fulfillment_workflow")
    assert parent["status"] == "completed" and parent["result"]["status"] == "fulfilled"
    names = ("payment", "shipping", "notification")
    children = [only(runs, f"child_demo_{name}_workflow") for name in names]
    assert [child["parent"] for child in children] == [parent["id"]] * 3
    assert [child["status"] for child in children] == ["completed"] * 3
    assert [child["depth"] for child in children] == [1, 1, 1]
    assert [child["parent_close"] for child in children] == ["cancel", "cancel", "abandon"]
    # The parent waited for the payment and the shipping, not for the notification.
    assert [kind for kind, _, _ in parent["records"]] == [
        "step",
        "child",
        "child_result",
        "child",
        "child_result",
        "child",
    ]
    waited = [name for kind, name, _ in parent["records"] if kind == "child_result"]
    assert waited == [children[0]["id"], children[1]["id"]]
    assert parent["result"]["notification_run_id"] == children[2]["id"]
    assert parent["result"]["payment"] == children[0]["result"]
    assert bodies(children[2]) == ["send_email"]


def test_10_nested_parallel_and_failing_children(runs, output):
    chain = [only(runs, f"patterns_demo_level_{n}_workflow") for n in (1, 2, 3)]
    assert [run["depth"] for run in chain] == [0, 1, 2]
    assert [run["parent"] for run in chain] == [None, chain[0]["id"], chain[1]["id"]]
    assert chain[0]["result"]["child"]["grandchild"] == chain[2]["result"]

    parallel = only(runs, "patterns_demo_parallel_parent_workflow")
    tasks = runs["patterns_demo_parallel_task_workflow"]
    assert [run["parent"] for run in tasks] == [parallel["id"]] * 3
    assert [result["task_id"] for result in parallel["result"]["results"]] == [
        "task-0",
        "task-1",
        "task-2",
    ]
    assert [kind for kind, _, _ in parallel["records"]] == ["child"] * 3 + ["gather"]
    assert re.search(r"3 child runs did 0\.6s of work in \d+\.\d\ds", output), output
    # Side by side: some child began before another ended (the database's times; a loaded
    # machine makes each child slower, and wall time would make them look serial).
    spans = sorted(tuple(map(datetime.fromisoformat, run["span"])) for run in tasks)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), spans

    caught = only(runs, "patterns_demo_error_handling_parent_workflow")
    failing = only(runs, "patterns_demo_failing_child_workflow")
    assert failing["status"] == "failed" and failing["parent"] == caught["id"]
    assert bodies(failing) == ["failing_step"]  # max_attempts=1: never retried
    assert caught["status"] == "completed"
    assert caught["result"] == {
        "status": "child_failed",
        "error": "This step always fails!",
        "error_type": failing["error"][0],
        "child_run_id": failing["id"],
    }


def test_the_coming_from_page_shows_the_workflows_as_they_run():
    page = (ROOT / "docs" / "coming-from" / "pyworkflow.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    modules = sorted((EXAMPLES / "workflows").glob("[!_]*.py"))
    assert len(modules) == 10
    for module in modules:
        assert module.read_text() in blocks, f"{module.name} is not shown as it is"
