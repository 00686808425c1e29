"""Flow control per key: concurrency keys, singletons and debounce (in-process workers)."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

import django_durable as durable
from django_durable import Worker
from django_durable.api.serializers import RunSerializer
from django_durable.declarations.registry import registered_workflows
from django_durable.declarations.specs import FlowSpec
from django_durable.exceptions import FlowKeyError
from django_durable.models import Run, RunStatus
from django_durable.store import claims as claims_module
from django_durable.store import dialect, flow
from django_durable.testing import run_until_finished, time_machine
from tests.conftest import ON_POSTGRES
from tests.testapp import flow_workflows as fw
from tests.testapp import workflows as wf

pytestmark = pytest.mark.django_db(transaction=True)


def keys_of(claims) -> list[str]:
    return sorted(Run.objects.get(pk=claim.run_id).flow_key for claim in claims)


def finish(*claims) -> None:
    """Mark claimed runs completed, as a worker finishing them would."""
    ids = [claim.run_id for claim in claims]
    Run.objects.filter(pk__in=ids).update(status=RunStatus.COMPLETED, finished_at=timezone.now())


# Concurrency keys


def test_the_key_and_limit_are_stored_on_the_run():
    handle = fw.flow_pair.start("acme", 0)
    run = Run.objects.get(pk=handle.id)
    assert (run.flow_key, run.flow_limit) == ("acme", 2)
    assert Run.objects.get(pk=wf.add.start(1, 2).id).flow_key is None


def test_one_claim_takes_no_more_runs_of_a_key_than_its_limit():
    for _ in range(3):
        fw.flow_pair.start("a")
    for _ in range(2):
        fw.flow_pair.start("b")
    claims = Worker(concurrency=10).claim(10)
    assert keys_of(claims) == ["a", "a", "b", "b"]
    assert Worker().claim(10) == []  # another worker: both keys are full
    finish(claims[0])
    [again] = Worker().claim(10)
    assert Run.objects.get(pk=again.run_id).flow_key == "a"


def test_a_hot_key_does_not_starve_the_others():
    for _ in range(30):
        fw.flow_one.start("hot")
    fw.flow_one.start("cold")
    wf.add.start(1, 1)
    worker = Worker(concurrency=1)
    first = worker.claim(1)
    assert keys_of(first) == ["hot"]
    # The hot key is full: the claim goes past its 29 waiting runs to the others.
    second = [*worker.claim(1), *worker.claim(1)]
    names = sorted(Run.objects.get(pk=claim.run_id).workflow_name for claim in second)
    assert names == ["tests.add", "tests.flow_one"]
    assert Worker().claim(5) == []


def test_keys_are_per_workflow():
    fw.flow_one.start("same")
    fw.flow_queued.start("same")
    assert len(Worker(concurrency=5).claim(5)) == 2


def test_a_slot_frees_when_the_lease_of_its_run_expires():
    fw.flow_one.start("k")
    fw.flow_one.start("k")
    [held] = Worker(lease_seconds=1).claim(5)
    assert Worker().claim(5) == []
    with time_machine() as clock:
        clock.skip(2)  # the lease ran out: the worker is gone, its slot is free
        [taken] = Worker().claim(5)
    assert taken.run_id != held.run_id


def test_runs_of_a_key_all_finish_one_at_a_time():
    handles = [fw.flow_one.start("k", 0) for _ in range(4)]
    run_until_finished(*handles)
    assert [h.result() for h in handles] == ["k"] * 4


def test_async_workflows_and_starts_are_limited_alike():
    async def start_three():
        return [await fw.flow_one_async.astart("k") for _ in range(3)]

    handles = async_to_sync(start_three)()
    assert len({h.id for h in handles}) == 3
    worker = Worker(concurrency=5)
    [claim] = worker.claim(5)
    worker.process(claim)
    run_until_finished(*handles)


def test_children_and_forks_keep_the_key():
    handle = fw.flow_one.start("k", 0)
    run_until_finished(handle)
    fork = durable.fork(handle.id, from_step=0)
    run = Run.objects.get(pk=fork.id)
    assert (run.flow_key, run.flow_limit) == ("k", 1)


@pytest.mark.skipif(not ON_POSTGRES, reason="SQLite claims one writer at a time: no key locks")
def test_a_key_another_claimer_holds_is_left_to_it():
    fw.flow_one.start("k")
    wf.add.start(1, 1)
    held, release = threading.Event(), threading.Event()

    def other_claimer() -> None:  # holds the key's lock as a claim in flight does
        try:
            with transaction.atomic():
                params: dict = {}
                flow.lock_keys(dialect.dialect(), params, [("tests.flow_one", "k")])
                assert params["held_k"] == ["k"]
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_claimer)
    thread.start()
    try:
        assert held.wait(10)
        claims = Worker(concurrency=5).claim(5)
    finally:
        release.set()
        thread.join()
    assert [claim.workflow_name for claim in claims] == ["tests.add"]
    [claim] = Worker().claim(5)  # let go of: the next claim takes it
    assert claim.workflow_name == "tests.flow_one"


# The claim stays one statement


def counting_statements(monkeypatch) -> list[str]:
    """Return the list every statement of a claim is appended to, from now on."""
    seen: list[str] = []
    real = claims_module.execute

    def counting(d, sql, params):
        seen.append(sql)
        return real(d, sql, params)

    monkeypatch.setattr(claims_module, "execute", counting)
    monkeypatch.setattr("django_durable.store.flow.execute", counting)
    return seen


def statements_of_a_claim(monkeypatch, worker: Worker | None = None) -> list[str]:
    seen = counting_statements(monkeypatch)
    (worker or Worker(concurrency=4)).claim(4)
    return seen


def claiming(sql: str) -> bool:
    return "UPDATE durable_run SET status = 'running'" in sql


def test_a_first_claim_looks_for_keyed_runs_and_the_next_plain_one_does_not(monkeypatch):
    worker = Worker(concurrency=4)  # its workflows include keyed ones
    seen = counting_statements(monkeypatch)
    wf.add.start(1, 1)
    assert len(worker.claim(4)) == 1
    # PostgreSQL first looks for ready runs under a key limit (none: no locks, no transaction).
    assert len(seen) == (2 if ON_POSTGRES else 1) and claiming(seen[-1]), seen
    seen.clear()
    wf.add.start(2, 2)
    assert len(worker.claim(4)) == 1
    assert len(seen) == 1 and claiming(seen[0]), seen  # the claim said no keyed run was left


def test_a_keyed_claim_locks_its_keys_then_claims_in_one_statement(monkeypatch):
    fw.flow_one.start("k")
    seen = statements_of_a_claim(monkeypatch)
    updates = [sql for sql in seen if claiming(sql)]
    assert len(updates) == 1
    if ON_POSTGRES:
        assert len(seen) == 3 and "pg_try_advisory_xact_lock" in seen[1]
    else:
        assert len(seen) == 1


def test_a_keyed_run_left_by_a_plain_claim_is_taken_by_the_next_claim(monkeypatch):
    worker = Worker(concurrency=1)
    assert worker.claim(1) == []  # the first claim's look: nothing yet
    keyed = fw.flow_one.start("acme")
    plain = [wf.add.start(n, n) for n in range(3)]
    seen = counting_statements(monkeypatch)
    first = worker.claim(1)
    if not ON_POSTGRES:  # no key locks there, so no look first: the oldest run comes first
        assert [str(claim.run_id) for claim in first] == [keyed.id]
        return
    # The plain claim holds no key: it takes the oldest plain run and says a keyed run is
    # ready; the next claim looks for it first, and takes it (the oldest) under its lock.
    assert [str(claim.run_id) for claim in first] == [plain[0].id]
    assert len(seen) == 1
    seen.clear()
    assert [str(claim.run_id) for claim in worker.claim(1)] == [keyed.id]
    assert len(seen) == 3 and "pg_try_advisory_xact_lock" in seen[1], seen
    seen.clear()
    # Now none is left: plain claims are one statement again.
    assert [str(claim.run_id) for claim in worker.claim(1)] == [plain[1].id]
    assert len(seen) == 1, seen


def test_a_keyed_run_whose_key_is_full_costs_plain_claims_no_look(monkeypatch):
    worker = Worker(concurrency=4)
    fw.flow_one.start("acme")
    [taken] = worker.claim(4)  # the first claim looks, and takes acme's only slot
    fw.flow_one.start("acme")  # ready, but its key is full while the first one runs
    seen = counting_statements(monkeypatch)
    for n in range(2):
        wf.add.start(n, n)
        [claim] = worker.claim(4)
        assert claim.workflow_name == "tests.add" and claim.run_id != taken.run_id
        assert len(seen) == 1, seen  # the full key's run is not reported as left
        seen.clear()


def test_a_key_queued_behind_a_long_backlog_of_a_full_key_is_claimed(monkeypatch):
    """More runs of a full key than a claim reads in claim order (``flow.HEAD``): the
    claim says keyed runs may be left, and the next one's look goes key by key, past the
    backlog, to the key behind it."""
    for _ in range(flow.HEAD + 6):
        fw.flow_one.start("hot")
    worker = Worker(concurrency=1)
    [hot] = worker.claim(1)  # the hot key's one slot
    plain = wf.add.start(1, 1)
    # A plain claim: it cannot tell whether a key past the ones it read has room, so it
    # says keyed runs may be left.
    assert [str(claim.run_id) for claim in worker.claim(1)] == [plain.id]
    cold = fw.flow_one.start("cold")  # behind every hot run in claim order
    seen = counting_statements(monkeypatch)
    [claim] = worker.claim(1)
    assert str(claim.run_id) == cold.id and claim.run_id != hot.run_id
    if ON_POSTGRES:  # the head (hot runs only), then key by key, then the lock and claim
        assert "WITH RECURSIVE" in seen[1] and "pg_try_advisory_xact_lock" in seen[2], seen
    assert worker.claim(1) == []  # both keys are full now


def registry_without_keys(monkeypatch) -> None:
    """Have workers know only the workflows that declare no key (as in most projects)."""
    plain = {name: w for name, w in registered_workflows().items() if w.flow is None}
    monkeypatch.setattr("django_durable.worker.worker.registered_workflows", lambda: plain)


def test_a_worker_whose_workflows_declare_no_key_claims_in_one_statement(monkeypatch):
    registry_without_keys(monkeypatch)
    worker = Worker(concurrency=4)
    assert worker.claim(4) == []  # the first claim looks for keyed runs all the same
    wf.add.start(1, 1)
    seen = statements_of_a_claim(monkeypatch, worker)
    assert len(seen) == 1 and claiming(seen[0]), seen


def test_a_keyed_run_left_by_earlier_code_is_claimed_by_the_next_claim(monkeypatch):
    registry_without_keys(monkeypatch)
    worker = Worker(concurrency=4)
    assert worker.claim(4) == []
    # A run of tests.add as an earlier version of the code, which declared a key, started it.
    left = wf.add.start(1, 1)
    Run.objects.filter(pk=left.id).update(flow_key="acme", flow_limit=1)
    plain = wf.add.start(2, 2)
    if not ON_POSTGRES:  # no key locks there, so no look first: a claim takes both
        assert sorted(str(claim.run_id) for claim in worker.claim(4)) == sorted([left.id, plain.id])
        return
    # PostgreSQL: the plain claim leaves it, and says so; the next claim looks and takes it.
    assert [str(claim.run_id) for claim in worker.claim(4)] == [plain.id]
    [claim] = worker.claim(4)
    assert str(claim.run_id) == left.id
    assert Run.objects.get(pk=left.id).status == RunStatus.RUNNING


# Singletons


def test_a_singleton_start_returns_the_unfinished_run_of_its_key():
    first = fw.flow_singleton.start("acme", note="first")
    again = fw.flow_singleton.start("acme", note="second")
    other = fw.flow_singleton.start("globex")
    assert again.id == first.id and other.id != first.id
    assert Run.objects.count() == 2
    Worker().run_once()  # now waiting for its event: still unfinished
    assert Run.objects.get(pk=first.id).status == RunStatus.WAITING
    assert fw.flow_singleton.start("acme").id == first.id
    durable.emit_event("flow.go:acme")
    run_until_finished(first)
    assert first.result() == "first"
    later = fw.flow_singleton.start("acme", note="later")
    assert later.id != first.id


def test_an_async_singleton_start_returns_it_too():
    first = fw.flow_singleton.start("acme")
    assert async_to_sync(fw.flow_singleton.astart)("acme").id == first.id


def test_a_queued_singleton_waits_for_the_run_before_it():
    first = fw.flow_queued.start("acme", 0)
    second = fw.flow_queued.start("acme", 0)
    assert first.id != second.id
    worker = Worker(concurrency=5)
    [claim] = worker.claim(5)
    assert str(claim.run_id) == first.id
    worker.process(claim)
    run_until_finished(first, second)


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent starts race only on PostgreSQL")
def test_concurrent_singleton_starts_make_one_run():
    ids = _start_concurrently(lambda: fw.flow_singleton.start("acme").id)
    assert len(set(ids)) == 1
    assert Run.objects.count() == 1


# Debounce


def test_starts_within_the_window_collapse_into_one_run_with_the_last_input():
    with time_machine() as clock:
        first = fw.flow_debounced.start("acme", 1)
        due = Run.objects.get(pk=first.id).available_at
        clock.skip(1)
        second = fw.flow_debounced.start("acme", 2)
        third = fw.flow_debounced.start("acme", 3)
        other = fw.flow_debounced.start("globex", 9)
        assert first.id == second.id == third.id != other.id
        run = Run.objects.get(pk=first.id)
        assert run.get_input() == (["acme", 3], {})
        assert run.available_at >= due + timedelta(seconds=0.9)  # the window began again
        assert Worker().claim(5) == []  # neither window has passed
        clock.skip(2.5)
        run_until_finished(first, other)
    assert first.result() == 3 and other.result() == 9


def test_a_start_after_the_window_starts_a_new_run():
    with time_machine() as clock:
        first = fw.flow_debounced.start("acme", 1)
        clock.skip(3)
        [claim] = Worker().claim(5)  # claimed: no start changes it any more
        later = fw.flow_debounced.start("acme", 2)
        assert str(claim.run_id) == first.id != later.id
        assert Run.objects.get(pk=first.id).get_input() == (["acme", 1], {})


@pytest.mark.skipif(not ON_POSTGRES, reason="concurrent starts race only on PostgreSQL")
def test_concurrent_debounced_starts_make_one_run_with_one_of_their_inputs():
    values = iter(range(100))
    lock = threading.Lock()

    def start() -> str:
        with lock:
            value = next(values)
        return str(fw.flow_debounced.start("acme", value).id)

    ids = _start_concurrently(start)
    assert len(set(ids)) == 1
    [run] = Run.objects.all()
    assert run.get_input()[0][1] in range(8)


def test_a_debounced_start_inside_a_rolled_back_transaction_leaves_the_run_as_it_was():
    first = fw.flow_debounced.start("acme", 1)

    def start_and_roll_back() -> None:
        with transaction.atomic():
            fw.flow_debounced.start("acme", 2)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        start_and_roll_back()
    assert Run.objects.get(pk=first.id).get_input() == (["acme", 1], {})


# Key functions and declarations


def test_a_key_that_is_no_str_is_refused_at_start_and_nothing_is_stored():
    with pytest.raises(FlowKeyError, match=r"returned 42: a key must be a non-empty str"):
        fw.flow_bad_key.start(42)
    with pytest.raises(FlowKeyError, match="returned ''"):
        fw.flow_bad_key.start("")
    with pytest.raises(FlowKeyError, match=r"raised KeyError: 'customer'"):
        fw.flow_raising_key.start({})
    assert not Run.objects.exists()
    assert isinstance(FlowKeyError(), ValueError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency_limit": 2}, "needs concurrency_key="),
        ({"concurrency_key": str, "singleton_key": str}, "not both"),
        ({"concurrency_key": str, "concurrency_limit": 0}, "from 1 to 32767"),
        ({"concurrency_key": str, "concurrency_limit": True}, "from 1 to 32767"),
        ({"singleton_key": str, "on_conflict": "drop"}, "on_conflict="),
        ({"debounce_key": str}, "needs debounce="),
        ({"debounce": 0}, "more than zero"),
        ({"singleton_key": str, "debounce": 1}, "do not mix"),
        ({"concurrency_key": str, "debounce": 1, "debounce_key": repr}, "one flow key"),
    ],
)
def test_wrong_options_are_refused_when_declared(options, message):
    base = {
        "concurrency_key": None,
        "concurrency_limit": None,
        "singleton_key": None,
        "on_conflict": "return",
        "debounce": None,
        "debounce_key": None,
    }
    with pytest.raises(ValueError, match=message):
        FlowSpec.build(**{**base, **options})


def test_options_make_the_spec():
    def build(**options):
        base = dict.fromkeys(
            ("concurrency_key", "concurrency_limit", "singleton_key", "debounce", "debounce_key")
        )
        return FlowSpec.build(**{**base, "on_conflict": "return", **options})

    assert build() is None
    assert build(concurrency_key=str).limit == 1
    queued = build(singleton_key=str, on_conflict="queue", debounce=timedelta(seconds=5))
    assert (queued.limit, queued.singleton, queued.debounce) == (1, False, 5.0)
    alone = build(debounce=3)
    assert alone.limit is None and alone.key_of("w", (), {}) == "*"


def _start_concurrently(start, count: int = 8) -> list:
    """Call ``start`` from ``count`` threads at once (each its own connection)."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list = []

    def one() -> None:
        try:
            barrier.wait()
            results.append(start())
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    connection.close()
    return results


# Where people see the key


def test_the_flow_key_shows_in_the_cli_the_api_and_the_admin(client):
    handle = fw.flow_pair.start("acme")
    plain = wf.add.start(1, 2)
    out = io.StringIO()
    call_command("durable", "runs", "show", handle.id, stdout=out, stderr=io.StringIO())
    assert "acme (at most 2 runs of this key at once)" in out.getvalue()
    out = io.StringIO()
    call_command("durable", "runs", "show", handle.id, "--json", stdout=out)
    assert json.loads(out.getvalue())["flow_key"] == "acme"
    assert RunSerializer(Run.objects.get(pk=handle.id)).data["flow_key"] == "acme"
    assert RunSerializer(Run.objects.get(pk=plain.id)).data["flow_key"] is None
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    page = client.get(reverse("admin:django_durable_run_change", args=[handle.id]))
    assert b"at most 2 runs of this key at once" in page.content
    page = client.get(reverse("admin:django_durable_run_change", args=[plain.id]))
    assert b"flow key" not in page.content.lower()
