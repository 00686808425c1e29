"""A worker process never executes more runs at once than its ``--concurrency``: its loop
and its execution threads (each claims its next run itself when one ends) both claim."""

from __future__ import annotations

import pytest

from django_durable.models import Run, RunStatus
from tests.conftest import wait_for
from tests.testapp import flow_workflows as fw
from tests.testapp.models import Execution
from tests.worker.test_flow_control_processes import FAST, most_inside_per_key

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("workflow", [fw.plain_inside, fw.flow_pair], ids=["plain", "keyed"])
def test_a_worker_process_runs_at_most_its_concurrency_at_once(worker_processes, workflow):
    for n in range(15):
        workflow.start(f"r{n}", 0.2)  # keyed: each its own key, whose limit (2) never binds
    worker_processes.start("--concurrency", "3", *FAST)
    held = []  # how many runs the worker held (claimed), sampled while it works

    def done() -> bool:
        held.append(Run.objects.filter(status=RunStatus.RUNNING).count())
        return Run.objects.filter(status=RunStatus.COMPLETED).count() == 15

    wait_for(done, 90, "15 runs")
    most = most_inside_per_key()
    print(f"\n[concurrency] 15 runs, --concurrency 3: {most['*']} inside, {max(held)} held at most")
    # Its threads bound what executes; the claims bound what it holds (a run claimed and
    # queued for no free thread would wait, its lease held, while another worker idles).
    assert max(held) == 3, worker_processes.logs()
    assert most["*"] == 3, worker_processes.logs()  # the slots were all used, never more
    assert Execution.objects.filter(label__startswith="enter:").count() == 15
