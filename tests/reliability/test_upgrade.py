"""Upgrading with runs in flight (issue 20 item 1): migrate, start the new code, runs go on.

The database is taken back to an old migration state with Django's ``MigrationExecutor``
(as Django's own migration tests do), filled there with runs in every status, written with
that state's historical models and in the form the code of that time recorded them; then
it is migrated to the head, and the new code's worker carries the runs on. Two old states:

- ``0001_initial``: the oldest schema there is (no events or messages yet);
- ``0009_drop_redundant_run_indexes``: the newest state before the 0010-0017 batch landed
  at once (2026-12-05), so what anyone who installed from the repository in November has.
  It adds runs waiting for an event and for a message, and an unread message.

Each test migrates back to the head at its end, failed or not: the other tests of this
process share the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

import django_durable as durable
from django_durable.core import serialization
from django_durable.models import Message, Run
from django_durable.testing import run_ready, run_until_finished, time_machine
from tests.reliability.conftest import report, wait_for
from tests.testapp.models import Execution
from tests.testapp.upgrade_workflows import NAP

APP = "django_durable"
OLDEST = "0001_initial"
EARLY_ADOPTER = "0009_drop_redundant_run_indexes"
SLEEPER = "tests.upgrade_sleeper"
EVENT_WAITER = "tests.upgrade_event_waiter"
MESSAGE_WAITER = "tests.upgrade_message_waiter"
TERMINAL = ("completed", "failed", "cancelled")
# The step table's columns at every state; what a run's history is.
HISTORY = (
    "SELECT position, kind, name, status, result, error, attempts FROM durable_step "
    "WHERE run_id = %s ORDER BY position"
)
FINISHED_ROW = "SELECT status, result, error, finished_at FROM durable_run WHERE id = %s"


def migrate(target: str | None = None) -> Any:
    """Migrate this app to ``target`` (its head when ``None``); return that state's apps."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    node = (APP, target) if target else executor.loader.graph.leaf_nodes(APP)[0]
    executor.migrate([node])
    return executor.loader.project_state([node]).apps


@contextlib.contextmanager
def schema_at(state: str) -> Iterator[Any]:
    """Give the historical apps of ``state`` with the database there; head again after."""
    try:
        yield migrate(state)
    finally:
        migrate()


def rows(query: str, run_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(query, [Run._meta.pk.get_db_prep_value(run_id, connection)])
        return list(cursor.fetchall())


def doc(value: Any) -> Any:
    """Return ``value`` as the document the code of every state stores in a JSON column."""
    return serialization.to_document(value, what="an old record")


def error_doc(exc: BaseException) -> dict[str, Any]:
    try:
        raise exc
    except BaseException as raised:
        return serialization.error_info(raised)


@dataclasses.dataclass
class Case:
    """One run left by the old code, and what the new code must make of it."""

    name: str
    run_id: uuid.UUID
    status: str  # its status after the upgrade, once the new worker is done
    result: list[str] | None = None
    # Step bodies the new code must execute once; every other body, never again.
    new_bodies: tuple[str, ...] = ()
    history: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    finished_row: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)


class OldRuns:
    """Write runs and records with the historical models of an old migration state."""

    def __init__(self, apps: Any, *, sleeps_end: datetime) -> None:
        self.run_model = apps.get_model(APP, "Run")
        self.step_model = apps.get_model(APP, "Step")
        self.apps = apps
        self.now = timezone.now()
        self.sleeps_end = sleeps_end
        self.cases: list[Case] = []

    def has(self, model: str) -> bool:
        try:
            self.apps.get_model(APP, model)
        except LookupError:
            return False
        return True

    def run(
        self, workflow: str, order: str, status: str, *, claimed: bool = True, **fields: Any
    ) -> Any:
        """Write a run; ``claimed``: a worker took it before (it has records, a lease token)."""
        kwargs = fields.pop("kwargs", {})
        return self.run_model.objects.create(
            workflow_name=workflow,
            status=status,
            input={"args": [order], "kwargs": kwargs},
            attempt=1,
            lease_token=1 if claimed else 0,
            created_at=self.now - timedelta(minutes=30),
            available_at=self.now - timedelta(minutes=30),
            started_at=self.now - timedelta(minutes=29) if claimed else None,
            updated_at=self.now - timedelta(minutes=5),
            **fields,
        )

    def step(self, run: Any, position: int, kind: str, name: str, **fields: Any) -> None:
        fields.setdefault("status", "completed")
        self.step_model.objects.create(
            run=run, position=position, kind=kind, name=name, attempts=1, **fields
        )

    def reserved(self, run: Any, order: str) -> str:
        """Record the reserve step as the old code did; return its recorded result."""
        result = f"reserve {order} (recorded before the upgrade)"
        self.step(run, 0, "step", "reserve", result=doc(result), duration_ms=3.0)
        return result

    def add(self, name: str, run: Any, status: str, **expected: Any) -> Case:
        case = Case(name, run.pk, status, **expected)
        self.cases.append(case)
        return case

    def build(self, *, nap: float) -> None:
        """Write a run in every status this state knows."""
        short = {"nap": nap}
        # Pending: started by the old code, never claimed.
        run = self.run(SLEEPER, "P", "pending", claimed=False, kwargs=short)
        self.add(
            "pending",
            run,
            "completed",
            result=["reserve P", "ship P"],
            new_bodies=("reserve", "ship"),
        )

        # Running, its worker died during the upgrade: its lease has expired.
        run = self.run(
            SLEEPER,
            "R",
            "running",
            kwargs=short,
            claimed_by="old-host:4242:w",
            lease_expires_at=self.now - timedelta(minutes=10),
        )
        reserved = self.reserved(run, "R")
        self.add("running", run, "completed", result=[reserved, "ship R"], new_bodies=("ship",))

        # Sleeping: the sleep is recorded with its end, the run waits with wake_at.
        end = self.sleeps_end
        run = self.run(
            SLEEPER, "S", "waiting", wake_at=end, waiting_for=f"sleep until {end.isoformat()}"
        )
        reserved = self.reserved(run, "S")
        self.step(run, 1, "sleep", "cool_off", result=doc(end), duration_ms=NAP * 1000)
        self.add("sleeping", run, "completed", result=[reserved, "ship S"], new_bodies=("ship",))

        # Completed, failed, cancelled: terminal, never executed again.
        result = ["reserve C (recorded)", "ship C (recorded)"]
        run = self.run(SLEEPER, "C", "completed", result=doc(result), finished_at=self.now)
        self.step(run, 0, "step", "reserve", result=doc(result[0]))
        self.step(run, 1, "sleep", "cool_off", result=doc(self.now - timedelta(minutes=20)))
        self.step(run, 2, "step", "ship", result=doc(result[1]))
        self.add("completed", run, "completed", result=result)

        failure = error_doc(ValueError("out of stock"))
        run = self.run(SLEEPER, "F", "failed", error=failure, finished_at=self.now)
        self.step(run, 0, "step", "reserve", status="failed", error=failure)
        self.add("failed", run, "failed")

        cancel = error_doc(durable.Cancelled("cancelled by an operator"))
        run = self.run(SLEEPER, "X", "cancelled", error=cancel, finished_at=self.now)
        self.reserved(run, "X")
        self.add("cancelled", run, "cancelled")

        if self.has("Message"):
            self.build_channels()

    def build_channels(self) -> None:
        """Runs waiting for an event and a message, and one holding an unread message."""
        marker = doc({"deadline": None, "floor": 0})
        run = self.run(
            EVENT_WAITER, "E", "waiting", wake_on="e:paid-E", waiting_for="event 'paid-E'"
        )
        reserved = self.reserved(run, "E")
        self.step(run, 1, "event", "paid-E", status="waiting", result=marker)
        self.add(
            "event", run, "completed", result=[reserved, "ship E paid 12"], new_bodies=("ship",)
        )

        # The message came before the upgrade: it woke the run, which nobody claimed since.
        run = self.run(MESSAGE_WAITER, "M", "pending")
        reserved = self.reserved(run, "M")
        self.step(run, 1, "recv", "approval", status="waiting", result=marker)
        old_message = self.apps.get_model(APP, "Message")
        old_message.objects.create(run=run, topic="approval", data={"by": "ann"})
        expected = [reserved, "ship M approved by ann"]
        self.add("unread message", run, "completed", result=expected, new_bodies=("ship",))

        run = self.run(
            MESSAGE_WAITER,
            "W",
            "waiting",
            wake_on="m:approval",
            waiting_for="message on 'approval'",
        )
        reserved = self.reserved(run, "W")
        self.step(run, 1, "recv", "approval", status="waiting", result=marker)
        expected = [reserved, "ship W approved by bob"]
        self.add("message", run, "completed", result=expected, new_bodies=("ship",))

    def snapshot(self) -> None:
        """Read each run's history (and a finished run's row) as the old schema holds it."""
        for case in self.cases:
            case.history = rows(HISTORY, case.run_id)
            if case.status in TERMINAL and not case.new_bodies:
                case.finished_row = rows(FINISHED_ROW, case.run_id)


def after_the_upgrade(cases: list[Case]) -> None:
    """What the operators do once the new code runs: emit the event, send the message."""
    names = {case.name for case in cases}
    if "event" in names:
        durable.emit_event("paid-E", {"amount": 12})
    if "message" in names:
        [waiting] = [case for case in cases if case.name == "message"]
        durable.send(waiting.run_id, {"by": "bob"}, topic="approval")


def check(cases: list[Case]) -> None:
    """Every run finished as expected, its history intact, no recorded body run again."""
    for case in cases:
        run = Run.objects.get(pk=case.run_id)
        assert run.status == case.status, (case.name, run.status, run.error)
        handle = durable.RunHandle(run)
        if case.status == "completed":
            assert handle.result() == case.result, case.name
        elif case.status == "failed":
            with pytest.raises(durable.WorkflowFailed, match="out of stock"):
                handle.result()
        else:
            with pytest.raises(durable.WorkflowCancelled, match="cancelled by an operator"):
                handle.result()
        # The records of the old code are still there, unchanged, where they were (a wait's
        # marker is replaced by what the wait received: that is its record completing).
        now = {record[0]: record for record in rows(HISTORY, case.run_id)}
        for record in case.history:
            if record[3] != "waiting":
                assert now.get(record[0]) == record, (case.name, record, now.get(record[0]))
        if case.finished_row:
            assert rows(FINISHED_ROW, case.run_id) == case.finished_row, case.name
        ran = sorted(
            Execution.objects.filter(run_id=str(case.run_id)).values_list("label", flat=True)
        )
        assert ran == sorted(case.new_bodies), (case.name, ran)
    for message in Message.objects.filter(run_id__in=[case.run_id for case in cases]):
        assert message.consumed_at is not None and message.consumed_position == 1, message.data
    # Nothing waits on a sleep, an event or a message that the schema change lost.
    assert not Run.objects.filter(pk__in=[c.run_id for c in cases]).exclude(status__in=TERMINAL)


@pytest.mark.parametrize("state", [OLDEST, EARLY_ADOPTER])
def test_runs_in_flight_carry_on_after_migrating_to_head(
    transactional_db: Any, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    caplog.set_level(logging.INFO, logger="django_durable")
    with time_machine() as clock:
        with schema_at(state) as apps:
            old = OldRuns(apps, sleeps_end=clock.now() + timedelta(seconds=NAP))
            old.build(nap=NAP)
            old.snapshot()
        # Migrated to the head: the new code's worker, in this process, takes over.
        run_ready()
        after_the_upgrade(old.cases)
        clock.skip(2 * NAP)  # every sleep, old or new, has ended
        run_until_finished(*[case.run_id for case in old.cases if case.status == "completed"])
    check(old.cases)
    # Only the run whose worker died was taken over, once; no claim was given up on.
    [running] = [case for case in old.cases if case.name == "running"]
    troubles = [
        record.getMessage()
        for record in caplog.records
        if "takes over run" in record.getMessage() or "Abandoning run" in record.getMessage()
    ]
    assert len(troubles) == 1, troubles
    assert f"takes over run {running.run_id}" in troubles[0], troubles
    assert "from worker old-host:4242:w" in troubles[0], troubles
    report(f"upgrade-from-{state[:4]}", runs=len(old.cases))


def test_a_worker_process_of_the_new_code_takes_over(
    transactional_db: Any, worker_processes: Any
) -> None:
    with schema_at(EARLY_ADOPTER) as apps:
        # Worker processes keep the real time: the sleep ended while workers were stopped.
        old = OldRuns(apps, sleeps_end=timezone.now() - timedelta(minutes=1))
        old.build(nap=0)
        old.snapshot()
    worker_processes.start("--concurrency", "4")
    after_the_upgrade(old.cases)

    def all_finished() -> bool:
        ids = [case.run_id for case in old.cases]
        return not Run.objects.filter(pk__in=ids).exclude(status__in=TERMINAL).exists()

    try:
        wait_for(all_finished, timeout=90, message="the runs to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker_processes.logs()}") from None
    check(old.cases)
    logs = worker_processes.logs()
    assert "Abandoning run" not in logs, logs
    assert logs.count("takes over run") == 1, logs
