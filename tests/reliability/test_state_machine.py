"""A Hypothesis state machine over the public API: any sequence of operations keeps the rules.

Hypothesis draws sequences of ``start`` (of workflows that step, receive messages, wait for
events, fail, fail once, sleep, fan out to children), ``cancel``, ``retry``, ``send``,
``emit_event``, rounds of an in-process worker, and a worker that stalls holding a run,
loses it to a takeover, and wakes up. After every operation it checks:

- every status is a valid one; nothing is left ``running`` or ready-but-unclaimed after a
  round of the worker has drained what was ready;
- a terminal run never changes again, unless ``retry()`` reopened it (or its parent's);
- a finished record (a completed or failed operation) never changes, unless a retry
  rewound it; positions are dense (0, 1, 2, ...);
- fencing tokens only go up; the stalled worker changes nothing once it lost the run;
- the columns agree with the status (a finished run has ``finished_at``, only a running
  run has a lease, a failed run has an error ...), and each message is taken at most once,
  by a ``recv`` record of its run.

Workflows here use no time and no randomness, and the sequences are derandomized: the same
examples run every time, and a failure shrinks to a short sequence of operations.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Count, Max
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

import django_durable as durable
from django_durable import Worker
from django_durable.models import (
    Event,
    Message,
    Run,
    RunStatus,
    RunValue,
    Step,
    StepStatus,
    StreamItem,
    WorkerProcess,
)
from tests.reliability.conftest import report
from tests.testapp import reliability_workflows as rw
from tests.testapp.models import Execution, SideEffect

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = ("sm/paid", "sm/shipped")
TERMINAL = RunStatus.terminal()
FINISHED_RECORD = (StepStatus.COMPLETED, StepStatus.FAILED)
STATS: dict[str, int] = defaultdict(int)


def descendants(run_id: str) -> set[str]:
    """Return the run and every run below it."""
    found, frontier = {run_id}, [run_id]
    while frontier:
        children = [
            str(pk)
            for pk in Run.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
        ]
        frontier = [child for child in children if child not in found]
        found.update(frontier)
    return found


class DurableMachine(RuleBasedStateMachine):
    runs = Bundle("runs")

    def __init__(self) -> None:
        super().__init__()
        self.worker = Worker(concurrency=4)
        self.terminal: dict[str, tuple[Any, ...]] = {}  # run id -> its row when it finished
        self.records: dict[tuple[str, int], tuple[Any, ...]] = {}  # finished records
        self.tokens: dict[str, int] = {}
        STATS["examples"] += 1

    def teardown(self) -> None:
        for model in (Message, RunValue, StreamItem, Step, Event, WorkerProcess):
            model.objects.all().delete()
        Run.objects.update(parent=None)
        Run.objects.all().delete()
        Execution.objects.all().delete()
        SideEffect.objects.all().delete()

    # --- starting runs -------------------------------------------------------------------

    @rule(target=runs, count=st.integers(0, 3))
    def start_steps(self, count: int) -> str:
        return rw.sm_steps.start(count).id

    @rule(target=runs, count=st.integers(1, 2))
    def start_receiver(self, count: int) -> str:
        return rw.sm_receives.start(count).id

    @rule(target=runs, name=st.sampled_from(EVENTS))
    def start_event_waiter(self, name: str) -> str:
        return rw.sm_waits_event.start(name).id

    @rule(target=runs, workflow=st.sampled_from([rw.sm_fails, rw.sm_fails_once, rw.sm_sleeps]))
    def start_other(self, workflow: Any) -> str:
        return workflow.start().id

    @rule(target=runs, count=st.integers(0, 2))
    def start_parent(self, count: int) -> str:
        return rw.sm_parent.start(count).id

    @rule(target=runs, key=st.sampled_from(["k1", "k2"]))
    def start_idempotent(self, key: str) -> str:
        before = Run.objects.filter(idempotency_key=key).values_list("pk", flat=True).first()
        run_id = rw.sm_steps.using(idempotency_key=key).start(1).id
        assert before is None or str(before) == run_id  # the key's run, not a new one
        return run_id

    # --- talking to runs -----------------------------------------------------------------

    @rule(run=runs, message=st.integers(0, 9))
    def send(self, run: str, message: int) -> None:
        if Run.objects.get(pk=run).status not in TERMINAL:
            durable.send(run, message, topic="go")
            return
        stored = Message.objects.filter(run_id=run).count()
        with pytest.raises(durable.RunFinished):  # a finished run takes no more messages
            durable.send(run, message, topic="go")
        assert Message.objects.filter(run_id=run).count() == stored

    @rule(name=st.sampled_from(EVENTS), data=st.integers(0, 9))
    def emit(self, name: str, data: int) -> None:
        durable.emit_event(name, data)

    # --- operating runs ------------------------------------------------------------------

    @rule(run=runs)
    def cancel(self, run: str) -> None:
        before = Run.objects.get(pk=run).status
        changed = durable.cancel(run, "the machine says stop")
        if before in TERMINAL:
            assert not changed  # nothing to cancel: a finished run stays as it was
        STATS["cancels"] += 1

    @rule(run=runs)
    def retry(self, run: str) -> None:
        before = Run.objects.get(pk=run).status
        if before not in (RunStatus.FAILED, RunStatus.CANCELLED):
            with pytest.raises(durable.RunNotRetryable):
                durable.retry(run)
            return
        # retry() reopens the run and the children cancelled with it: they may change now.
        reopened = descendants(run)
        handle = durable.retry(run)
        assert handle.status == RunStatus.PENDING
        for run_id in reopened:
            self.terminal.pop(run_id, None)
        self.records = {key: row for key, row in self.records.items() if key[0] not in reopened}
        STATS["retries"] += 1

    # --- workers -------------------------------------------------------------------------

    @rule(rounds=st.integers(1, 3))
    def work(self, rounds: int) -> None:
        for _ in range(rounds):
            if self.worker.run_once() == 0:
                break

    @rule()
    def drain(self) -> None:
        for _ in range(50):
            if self.worker.run_once() == 0:
                break
        # Whatever was ready was taken: nothing is stuck pending.
        assert not Run.objects.ready().exists(), list(Run.objects.ready().values("workflow_name"))

    @rule()
    def stalled_worker_loses_its_run(self) -> None:
        stalled, rescuer = Worker(concurrency=1), Worker(concurrency=1)
        claims = stalled.claim(1)
        if not claims:
            return
        [stale] = claims
        # Its lease runs out while it is stalled; maintenance takes the run back.
        Run.objects.filter(pk=stale.run_id).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        self.worker.maintain()
        run = Run.objects.get(pk=stale.run_id)
        if run.status != RunStatus.PENDING:  # lost its worker too often: failed
            assert run.status == RunStatus.FAILED
            assert run.error["type"] == "django_durable.WorkerLost"
            return
        # The rescuer takes whatever is ready (other runs may come before the stale one).
        taken = rescuer.claim(100)
        [fresh] = [claim for claim in taken if claim.run_id == stale.run_id]
        assert fresh.token == stale.token + 1
        before = self._snapshot(stale.run_id)
        stalled.process(stale)  # it wakes up and goes on: every write is refused
        assert self._snapshot(stale.run_id) == before
        for claim in taken:
            rescuer.process(claim)
        STATS["takeovers"] += 1

    def _snapshot(self, run_id: Any) -> tuple[Any, ...]:
        run = Run.objects.values_list("status", "lease_token", "result", "error", "claimed_by")
        steps = Step.objects.filter(run_id=run_id).order_by("position")
        return (
            run.get(pk=run_id),
            list(steps.values_list("position", "kind", "name", "status", "result")),
            Message.objects.filter(run_id=run_id, consumed_at__isnull=False).count(),
            RunValue.objects.filter(run_id=run_id).count(),
            Run.objects.filter(parent_id=run_id).count(),
        )

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def statuses_are_valid_and_agree_with_the_columns(self) -> None:
        for run in Run.objects.all():
            assert run.status in RunStatus.values
            # Operations are synchronous here: no run is left held by a worker.
            assert run.status != RunStatus.RUNNING
            assert run.claimed_by is None and run.lease_expires_at is None
            terminal = run.status in TERMINAL
            assert (run.finished_at is not None) == terminal, run
            if run.status == RunStatus.COMPLETED:
                assert run.error is None
            if run.status == RunStatus.FAILED:
                assert run.error and run.error.get("type")
            if run.status == RunStatus.CANCELLED:
                assert run.error["type"] == "django_durable.exceptions.Cancelled"
            if run.status == RunStatus.WAITING:
                assert run.waiting_for and (run.wake_at is not None or run.wake_on)
            if run.parent_id is not None:
                assert run.depth == Run.objects.get(pk=run.parent_id).depth + 1
        assert set(Step.objects.values_list("status", flat=True)) <= set(StepStatus.values)

    @invariant()
    def terminal_runs_never_change(self) -> None:
        for row in Run.objects.filter(status__in=TERMINAL).values_list(
            "pk", "status", "result", "error", "finished_at", "attempt"
        ):
            run_id = str(row[0])
            known = self.terminal.setdefault(run_id, row)
            assert known == row, f"terminal run {run_id} changed: {known} -> {row}"

    @invariant()
    def finished_records_never_change_and_positions_are_dense(self) -> None:
        for row in Step.objects.filter(status__in=FINISHED_RECORD).values_list(
            "run_id", "position", "kind", "name", "status", "result", "error"
        ):
            key = (str(row[0]), row[1])
            known = self.records.setdefault(key, row)
            assert known == row, f"record {key} changed: {known} -> {row}"
        for key in self.records:
            assert Step.objects.filter(run_id=key[0], position=key[1]).exists(), f"{key} gone"
        for dense in Step.objects.values("run_id").annotate(n=Count("id"), last=Max("position")):
            assert dense["last"] == dense["n"] - 1, dense

    @invariant()
    def fencing_tokens_only_go_up(self) -> None:
        for run_id, token in Run.objects.values_list("pk", "lease_token"):
            assert token >= self.tokens.get(str(run_id), 0)
            self.tokens[str(run_id)] = token

    @invariant()
    def a_message_is_taken_at_most_once_by_a_recv_of_its_run(self) -> None:
        taken = Message.objects.filter(consumed_at__isnull=False)
        positions = list(taken.values_list("run_id", "consumed_position"))
        assert len(positions) == len(set(positions))
        for run_id, position in positions:
            record = Step.objects.get(run_id=run_id, position=position)
            assert (record.kind, record.status) == ("recv", StepStatus.COMPLETED)
        assert not Message.objects.filter(
            consumed_at__isnull=True, consumed_position__isnull=False
        ).exists()


def test_any_sequence_of_operations_keeps_the_rules():
    STATS.clear()
    started = time.monotonic()
    DurableMachine.TestCase.settings = settings(
        max_examples=40,
        stateful_step_count=25,
        derandomize=True,  # the same sequences every run: never flaky, shrinkable
        database=None,  # and nothing written to .hypothesis/
        deadline=None,  # the machine is busy: a slow step is not a failure
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        print_blob=True,
    )
    DurableMachine.TestCase().runTest()
    report(
        "state-machine",
        seconds=time.monotonic() - started,
        examples=STATS["examples"],
        cancels=STATS["cancels"],
        retries=STATS["retries"],
        takeovers=STATS["takeovers"],
    )
