"""Starting runs and following them from application code."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.models import Run, RunStatus
from django_durable.testing import run_all
from tests.conftest import ON_POSTGRES
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_creates_a_pending_run_with_its_input():
    handle = wf.add.start(2, b=3)
    assert isinstance(handle, durable.RunHandle)
    assert handle.status == RunStatus.PENDING
    assert handle.workflow_name == "tests.add"
    run = Run.objects.get(pk=handle.id)
    assert run.get_input() == ([2], {"b": 3})
    assert run.queue == "default" and run.priority == 0 and run.attempt == 1


def test_start_by_name_with_options():
    handle = durable.start("tests.add", args=(1,), kwargs={"b": 2}, queue="q2", priority=5)
    run = Run.objects.get(pk=handle.id)
    assert (run.queue, run.priority, run.get_input()) == ("q2", 5, ([1], {"b": 2}))


def test_start_of_an_unknown_workflow_is_a_clear_error():
    with pytest.raises(durable.WorkflowNotFound, match=r"No workflow named 'nope' is registered"):
        durable.start("nope")
    assert not Run.objects.exists()


def test_input_that_is_not_json_is_refused_before_anything_is_stored():
    with pytest.raises(durable.SerializationError, match=r"input of workflow 'tests\.add'"):
        wf.add.start(object(), 1)
    with pytest.raises(durable.SerializationError, match="NUL character"):
        wf.add.start("a\x00b", 1)
    assert not Run.objects.exists()


def test_oversized_input_is_refused(settings):
    settings.DJANGO_DURABLE = {**settings.DJANGO_DURABLE, "MAX_PAYLOAD_BYTES": 100}
    with pytest.raises(durable.PayloadTooLarge, match="over the limit of 100 bytes"):
        wf.add.start("x" * 200, 1)
    assert not Run.objects.exists()


def test_the_same_idempotency_key_returns_the_same_run():
    first = wf.add.using(idempotency_key="order-1").start(1, 2)
    second = wf.add.using(idempotency_key="order-1").start(1, 2)
    assert first.id == second.id
    assert Run.objects.count() == 1
    other = wf.add.using(idempotency_key="order-2").start(1, 2)
    assert other.id != first.id


def test_an_idempotency_key_of_another_workflow_is_an_error():
    wf.add.using(idempotency_key="k").start(1, 2)
    with pytest.raises(durable.DurableError, match="already started run"):
        wf.counted.using(idempotency_key="k").start(1)


def test_concurrent_starts_with_one_key_make_one_run():
    ids: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        try:
            barrier.wait()
            ids.append(wf.add.using(idempotency_key="race").start(1, 1).id)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(ids)) == 1
    assert Run.objects.count() == 1


def test_a_start_inside_a_rolled_back_transaction_leaves_no_run():
    class Rollback(Exception):
        pass

    seen = []

    def start_then_fail() -> None:
        with transaction.atomic():
            handle = wf.add.start(1, 2)
            seen.append(Run.objects.filter(pk=handle.id).exists())
            raise Rollback

    with pytest.raises(Rollback):
        start_then_fail()
    assert seen == [True]
    assert not Run.objects.exists()


def test_a_start_inside_a_committed_transaction_is_runnable_after_commit(worker):
    with transaction.atomic():
        handle = wf.add.start(1, 2)
    run_all()
    assert handle.result(timeout=1) == 3


def test_delay_holds_the_run_back(worker):
    handle = wf.add.using(delay=0.4).start(1, 2)
    run = Run.objects.get(pk=handle.id)
    assert run.available_at > timezone.now()
    assert worker.run_once() == 0
    time.sleep(0.45)
    assert worker.run_once() == 1
    assert handle.result(timeout=1) == 3


def test_delay_until_a_datetime():
    when = timezone.now() + dt.timedelta(hours=2)
    handle = wf.add.using(delay=when).start(1, 2)
    assert Run.objects.get(pk=handle.id).available_at == when
    with pytest.raises(ValueError, match="aware datetime"):
        wf.add.using(delay=dt.datetime(2030, 1, 1)).start(1, 2)
    with pytest.raises(ValueError, match="cannot be negative"):
        wf.add.using(delay=-1).start(1, 2)
    with pytest.raises(ValueError, match=r"^delay= must be a number of seconds, not NaN\.$"):
        wf.add.using(delay=float("nan"))
    with pytest.raises(ValueError, match="under 100 years"):
        wf.add.using(delay=float("inf"))
    with pytest.raises(TypeError, match="takes seconds"):
        wf.add.using(delay="soon")  # type: ignore[arg-type]
    assert not Run.objects.filter(available_at__gt=when).exists()  # nothing was stored


def test_higher_priority_runs_are_claimed_first():
    low = wf.add.using(priority=-5).start(0, 0)
    high = wf.add.using(priority=10).start(0, 0)
    normal = wf.add.start(0, 0)
    claimed = [Worker(concurrency=1).claim(1)[0].run_id for _ in range(3)]
    assert [str(run_id) for run_id in claimed] == [high.id, normal.id, low.id]


def test_workers_serve_only_their_queues():
    other = wf.add.using(queue="reports").start(1, 1)
    default = wf.add.start(1, 1)
    assert [str(c.run_id) for c in Worker(queues=["reports"]).claim(5)] == [other.id]
    assert [str(c.run_id) for c in Worker().claim(5)] == [default.id]


def test_result_waits_and_times_out_with_a_clear_error():
    handle = wf.add.start(1, 2)
    started = time.monotonic()
    with pytest.raises(
        TimeoutError, match=r"did not finish within 0.3 seconds \(status: pending\)"
    ):
        handle.result(timeout=0.3)
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("timeout", [float("nan"), -1, dt.timedelta(seconds=-1)])
def test_waits_refuse_a_negative_or_nan_timeout_instead_of_waiting_for_ever(timeout):
    from django_durable.client import values

    handle = wf.add.start(1, 2)
    nan = isinstance(timeout, float) and timeout != timeout
    message = (
        r"^timeout= must be a number of seconds, not NaN\.$"
        if nan
        else r"^timeout= cannot be negative\.$"
    )
    waits = [
        lambda: handle.result(timeout=timeout),
        lambda: async_to_sync(handle.aresult)(timeout=timeout),
        lambda: durable.get_value(handle.id, "k", timeout=timeout),
        lambda: values.watch_value(handle.id, "k", timeout=timeout),
        lambda: list(durable.read_stream(handle.id, "k", follow=True, timeout=timeout)),
    ]
    for wait in waits:
        with pytest.raises(ValueError, match=message):
            wait()


def test_result_wakes_when_a_worker_in_another_thread_finishes():
    handle = wf.sleeper.start(0.2)

    def work() -> None:
        try:
            run_all()
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        assert handle.result(timeout=10) == "woke"
    finally:
        thread.join()


def test_get_run_and_run_not_found():
    handle = wf.add.start(1, 2)
    assert durable.get_run(handle.id) == handle
    assert durable.get_run(handle.id).status == RunStatus.PENDING
    with pytest.raises(durable.RunNotFound):
        durable.get_run("00000000-0000-0000-0000-000000000000")
    with pytest.raises(durable.RunNotFound):
        durable.get_run("not-a-uuid")


def test_list_runs_newest_first_with_filters():
    first = wf.add.start(1, 1)
    time.sleep(0.01)
    second = wf.boom.start()
    time.sleep(0.01)
    third = wf.add.start(2, 2)
    assert [h.id for h in durable.list_runs()] == [third.id, second.id, first.id]
    assert [h.id for h in durable.list_runs(workflow="tests.add")] == [third.id, first.id]
    assert [h.id for h in durable.list_runs(limit=1)] == [third.id]
    run_all()
    assert [h.id for h in durable.list_runs(status="failed")] == [second.id]
    assert len(durable.list_runs(status=["completed", "failed"])) == 3
    for limit in (0, -1, 1_000_001, 10**20, 1.5, True, "5"):
        with pytest.raises(ValueError, match=r"limit= must be a whole number from 1 to 1000000"):
            durable.list_runs(limit=limit)  # type: ignore[arg-type]


def test_owner_is_recorded():
    user = get_user_model().objects.create_user("ada")
    handle = wf.add.using(owner=user).start(1, 2)
    assert Run.objects.get(pk=handle.id).owner == user
    assert [h.id for h in durable.list_runs(owner=user)] == [handle.id]


def test_async_twins():
    handle = async_to_sync(wf.add.astart)(3, 4)
    same = async_to_sync(durable.aget_run)(handle.id)
    assert same == handle
    by_name = async_to_sync(durable.astart)("tests.add", args=(1, 1))
    run_all()
    assert async_to_sync(handle.aresult)(timeout=5) == 7
    assert async_to_sync(by_name.aresult)(timeout=5) == 2
    listed = async_to_sync(durable.alist_runs)(workflow="tests.add")
    assert {h.id for h in listed} == {handle.id, by_name.id}


@pytest.mark.skipif(not ON_POSTGRES, reason="NOTIFY exists only on PostgreSQL")
def test_a_start_notifies_workers_on_commit_only():
    from django_durable.store.notify import get_listener

    listener = get_listener()
    assert listener is not None
    woken = threading.Event()
    listener.subscribe(["q:default"], woken.set)
    try:
        assert listener.connected.wait(5)
        time.sleep(0.1)
        woken.clear()
        with transaction.atomic():
            wf.add.start(1, 2)
            time.sleep(0.3)
            assert not woken.is_set(), "notified before commit"
        assert woken.wait(5), "not notified after commit"
    finally:
        listener.unsubscribe(["q:default"], woken.set)


def test_priority_must_fit_the_column():
    with pytest.raises(ValueError, match="priority= must be a whole number from -32768 to 32767"):
        wf.add.using(priority=40_000).start(1, 2)
    with pytest.raises(ValueError, match="priority="):
        wf.add.using(priority=1.5).start(1, 2)
    assert not Run.objects.exists()


def test_run_not_found_names_the_id_plainly():
    import uuid

    missing = uuid.UUID("00000000-0000-0000-0000-000000000001")
    with pytest.raises(
        durable.RunNotFound, match=r"^No run has the id '00000000-0000-0000-0000-000000000001'\.$"
    ):
        durable.get_run(missing)


def test_aprune_deletes_old_finished_runs_and_dead_worker_records():
    from django_durable.models import WorkerProcess

    old = wf.add.start(1, 1)
    run_all()
    Run.objects.filter(pk=old.id).update(finished_at=timezone.now() - dt.timedelta(days=3))
    recent = wf.add.start(2, 2)
    run_all()
    WorkerProcess.objects.create(
        id="gone",
        hostname="h",
        pid=1,
        concurrency=1,
        last_seen_at=timezone.now() - dt.timedelta(days=3),
    )
    WorkerProcess.objects.create(id="alive", hostname="h", pid=2, concurrency=1)
    assert async_to_sync(durable.aprune)(older_than=dt.timedelta(days=1)).runs == 1
    assert list(Run.objects.values_list("id", flat=True)) == [recent.model.id]
    assert list(WorkerProcess.objects.values_list("id", flat=True)) == ["alive"]


def test_a_message_to_a_finished_run_is_refused_and_not_stored():
    from django_durable.models import Message

    handle = wf.add.start(1, 2)
    durable.send(handle.id, "early", idempotency_key="k")  # before it ran: stored
    run_all()
    with pytest.raises(durable.RunFinished, match=r"has finished \(completed\): the message"):
        durable.send(handle.id, "late")
    assert Message.objects.filter(run_id=handle.id).count() == 1
    # A redelivery of the first send still answers with its id.
    assert durable.send(handle.id, "early", idempotency_key="k") == Message.objects.get().pk
