"""The worker: claim runnable runs, hold their leases, execute them, store the outcome.

``Worker.run_once()`` does one round in the calling thread (tests use it); ``run()`` is
the long-lived loop of ``manage.py run_workflow_worker``: a thread pool executes runs,
a heartbeat thread renews leases, and on PostgreSQL a LISTEN connection wakes the loop
as soon as work is committed, with polling as the fallback.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import (
    DatabaseError,
    InterfaceError,
    connections,
    reset_queries,
)

from ..core import clock, logfields, telemetry
from ..core.conf import get_settings, queue_limits
from ..core.durations import to_seconds
from ..declarations.registry import get_workflow, registered_workflows
from ..engine import execution
from ..engine.execution import Outcome
from ..exceptions import Cancelled, LeaseLost, SuspendRun, WorkflowNotFound
from ..orchestration.schedules import sync_code_schedules
from ..orchestration.triggers import notify_keys
from ..store import announce, claims
from ..store.claims import cancel_reason
from ..store.dialect import NOW
from ..store.leases import release_worker_runs
from ..store.notify import get_listener
from ..store.offloop import call_off_loop
from ..store.records import Claim
from . import observe
from .claiming import check_connections, claim_ready
from .heartbeat import Heartbeat
from .inflight import InFlight
from .maintenance import maintain
from .outcomes import OutcomeStore
from .presence import mark_stopped, new_worker_id, register
from .startmarks import StartMarks
from .threads import ExecutionThreads
from .unknown import UnknownWorkflows

logger = logging.getLogger("django_durable")

_DB_ERRORS = (DatabaseError, InterfaceError)


def _positive(value: float | None, default: float, what: str) -> float:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"The {what} must be greater than 0, not {value}.")
    return value


def check_numbers(
    *,
    concurrency: float | None = None,
    poll_interval: float | None = None,
    lease_seconds: float | None = None,
    shutdown_timeout: float | None = None,
) -> None:
    """Raise ``ValueError``, in the Worker's words, for a value the Worker would refuse."""
    _positive(concurrency, 1, "concurrency")
    _positive(poll_interval, 1, "poll interval")
    _positive(lease_seconds, 1, "lease")
    if shutdown_timeout is not None:
        to_seconds(shutdown_timeout, "shutdown_timeout=")


class Worker:
    """Executes runs of the given queues, ``concurrency`` at a time."""

    def __init__(
        self,
        *,
        queues: list[str] | None = None,
        concurrency: int | None = None,
        burst: bool = False,
        poll_interval: float | None = None,
        lease_seconds: float | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        conf = get_settings()
        self.alias = conf.DATABASE
        self.id = new_worker_id()
        self.queues = list(dict.fromkeys(queues or [conf.DEFAULT_QUEUE]))
        self.concurrency = int(_positive(concurrency, conf.WORKER_CONCURRENCY, "concurrency"))
        self.burst = burst
        self.poll_interval = _positive(poll_interval, conf.POLL_INTERVAL, "poll interval")
        self.lease_seconds = _positive(lease_seconds, conf.LEASE_SECONDS, "lease")
        self.heartbeat_interval = (
            min(conf.heartbeat_interval, self.lease_seconds / 3)
            if lease_seconds
            else conf.heartbeat_interval
        )
        self.shutdown_timeout = conf.SHUTDOWN_TIMEOUT
        if shutdown_timeout is not None:
            self.shutdown_timeout = to_seconds(shutdown_timeout, "shutdown_timeout=")
        self.max_recoveries = conf.MAX_RECOVERIES
        self._inflight: dict[uuid.UUID, InFlight] = {}
        # Slots reserved by claims under way (the loop's, or an execution thread's own).
        self._reserved = 0
        # A claim found no room only because another claim held it: wake the loop after.
        self._look_again = False
        # While run() serves: writes the start records of step bodies that run long.
        self._marker: StartMarks | None = None
        # Claims whose give-up could not be written (the database was down): handed back
        # as soon as it answers again, rather than when their leases run out.
        self._unreleased: list[Claim] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = threading.Event()
        self._forced = threading.Event()
        self._next_maintenance = 0.0
        # The last claim left ready runs under a per-key limit: the next one looks for
        # them first (see _probe_keys). True at start: nothing is known yet.
        self._keys_left = True
        # The last claim filled every free slot: more may be ready, claim when one frees.
        self._saturated = False
        self._db_offset = timedelta(0)  # database time minus local time, from the last claim
        # While run()'s execution threads go on from run to run (next_here): the claim an
        # outcome's statement made for the thread that stored it (see _folding), by run.
        self._follows = False
        self._folded: dict[uuid.UUID, list[Claim]] = {}
        # PostgreSQL's LISTEN connection (None on SQLite): wakes the loop, hears cancels.
        self._listener = get_listener(self.alias)
        self._outcomes = OutcomeStore(
            self.alias,
            worker_id=self.id,
            db_now=self._db_now,
            hint_wake=self._hint_wake,
            give_up=self._give_up,
        )
        self._unknown = UnknownWorkflows(
            worker_id=self.id,
            queues=self.queues,
            poll_interval=self.poll_interval,
            alias=self.alias,
        )
        logfields.install()  # its log lines say which run they are about
        observe.watch(self)  # its gauges, with OpenTelemetry

    # --- one round, no threads ---------------------------------------------------------

    def run_once(self) -> int:
        """Wake due runs, recover lost ones, then claim and execute runs here; return how many."""
        self.maintain()
        claims = self.claim(self.concurrency)
        for claim in claims:
            self.process(claim)
        return len(claims)

    def maintain(self) -> None:
        """Do the rounds every worker shares, at most once per poll interval.

        Make due waiting runs pending, take back runs whose workers vanished, start the
        runs of due schedule ticks, and hand pending events to the workflows they trigger.
        Then, less often, look for ready runs of workflows this worker does not know.
        """
        self._next_maintenance = time.monotonic() + self.poll_interval
        maintain(worker_id=self.id, max_recoveries=self.max_recoveries, alias=self.alias)
        self._unknown.look(registered_workflows())

    def claim(self, limit: int) -> list[Claim]:
        """Claim up to ``limit`` ready runs and mark them in flight."""
        if limit <= 0:
            return []
        with self._lock:
            exclude = list(self._inflight)
        began, skipped = time.monotonic(), clock.skipped()
        workflows = registered_workflows()
        probed = self._probe_keys()
        claims = claim_ready(
            worker_id=self.id,
            queues=self.queues,
            limit=limit,
            lease_seconds=self.lease_seconds,
            exclude=exclude,
            workflows=sorted(workflows),  # the others wait for a worker that knows them
            probe_keys=probed,
            keys_left=self._saw_keys_left,
            alias=self.alias,
        )
        if not probed and len(claims) < limit:
            self._owe_a_look()
        return self._took(claims, began, skipped)

    def _took(self, claims: list[Claim], began: float, skipped: float) -> list[Claim]:
        """Mark ``claims`` (claimed by a statement begun at ``began``) in flight here."""
        with self._lock:
            for claim in claims:
                entry = self._inflight[claim.run_id] = InFlight(claim)
                entry.renewed(began, skipped, self.lease_seconds)
                if self._listener is not None:
                    self._listener.subscribe([f"x:{claim.run_id}"], entry.heard_cancel)
        if claims:
            self._db_offset = claims[-1].db_now - clock.now()
            announce.runs_started(claims, worker_id=self.id, alias=self.alias)
        return claims

    def _probe_keys(self) -> bool:
        """Whether this claim first looks for ready runs under a per-key limit (``store.flow``).

        Only when the previous claim said it left some (``_saw_keys_left``), or at the first
        claim: the look costs a round trip per claim, and most claims find none. A keyed
        run is then claimed one claim later than the plain runs beside it, never left: each
        claim that leaves keyed runs ready makes the next one look.
        """
        probe, self._keys_left = self._keys_left, False
        return probe

    def _saw_keys_left(self) -> None:
        self._keys_left = True

    def _owe_a_look(self) -> None:
        """Wake the loop if keyed runs were left to a look a claim short of runs did not make.

        A claim that did not look (``_probe_keys``) takes no keyed run, and nothing else
        NOTIFYs about those runs: without this, a slot that claim left empty would wait for
        the next poll. The loop's claim looks; a claim that looked does not wake it again
        (a hot key leaves runs behind every claim: that would spin).
        """
        if self._keys_left:
            self._wake.set()

    def process(self, claim: Claim) -> Outcome | None:
        """Execute a claimed run and store its outcome; never raises."""
        with self._lock:
            entry = self._inflight.setdefault(claim.run_id, InFlight(claim))
        check_connections()
        fields = logfields.RunFields(str(claim.run_id), claim.workflow_name, claim.attempt, self.id)
        logged = logfields.current_run.set(fields)
        try:
            with self._span(claim) as span:
                outcome = execution.execute(
                    claim,
                    alias=self.alias,
                    interrupt=lambda: self._interrupt(entry),
                    marker=self._marker,
                )
                span.outcome(outcome.kind)
                fold = self._folding(claim)
                try:
                    self._outcomes.store(claim, outcome, fold=fold)
                finally:
                    if fold is not None:
                        fold.release()
            return outcome
        except Exception:
            logger.exception("Worker %s could not execute run %s", self.id, claim.run_id)
            self._give_up(claim)
            return None
        except BaseException:  # a KeyboardInterrupt raised by the run: not ours to keep
            self._give_up(claim)
            raise
        finally:
            logfields.current_run.reset(logged)
            if django_settings.DEBUG:
                reset_queries()  # the query log would grow for ever
            check_connections()
            with self._lock:
                done = self._inflight.pop(claim.run_id, None)
            if done is not None and self._listener is not None:
                self._listener.unsubscribe([f"x:{claim.run_id}"], done.heard_cancel)

    def next_here(self, done: Claim) -> Claim | None:
        """Return the run the execution thread that ended ``done`` executes next, if any.

        When the loop would be woken to claim again (``_may_claim_after``), the thread
        claims one run itself: the claim's round trip, without the two hand-offs between
        threads (the loop woken, its claim queued to a thread) that would otherwise stand
        between one run's outcome and the next run's first step. Draining and burst mode
        leave it to the loop, which counts the runs in flight. Never raises.
        """
        with self._lock:
            folded = self._folded.pop(done.run_id, None)
        if folded is not None:  # claimed by the statement that stored done's outcome
            if not folded:
                self._saturated = False  # nothing more was ready
            return folded[0] if folded else None
        if not self._may_claim_after(done):
            return None
        if self._draining.is_set() or self.burst:
            self._wake.set()
            return None
        try:
            room, claims = self._claim_free(1)
        except Exception:
            logger.warning("Worker %s: an execution thread could not claim", self.id, exc_info=True)
            self._wake.set()  # the loop claims, and waits for the database if it must
            return None
        if room and not claims:
            self._saturated = False  # nothing more was ready
        return claims[0] if claims else None

    def _folding(self, claim: Claim) -> _Fold | None:
        """Return how ``claim``'s final outcome may claim the next run in its own statement
        (``claims.finish_and_claim``), a slot reserved for it; or ``None``.

        Only where the thread would claim right after the outcome (``next_here``) and the
        claim is the plain one: PostgreSQL with a listener, slots all busy, no queue under
        limits, no keyed runs said to be left (their look is a round trip of its own), and
        the run itself under no key limit (its end gives its key a slot, which the
        statement's snapshot, taken before that end, cannot report). The executing thread's
        own run counts as ended: its slot is the one the claim fills.
        """
        if not self._follows or self._listener is None or not self._may_claim_after(claim):
            return None
        if self.burst or self._draining.is_set() or self._keys_left or self._keyed(claim):
            return None
        if any(queue_limits(name) is not None for name in self.queues):
            return None
        with self._lock:
            if self.concurrency - (len(self._inflight) - 1) - self._reserved < 1:
                return None
            self._reserved += 1
        return _Fold(self, claim)

    def _claim_free(self, most: int) -> tuple[int, list[Claim]]:
        """Claim at most ``most`` runs into free slots; return the room there was, and them.

        The loop and the execution threads both claim: each reserves the slots it claims
        for under the lock, so that together they never hold more than ``concurrency``.
        """
        with self._lock:
            room = min(most, self.concurrency - len(self._inflight) - self._reserved)
            if room <= 0:
                # Slots another claim reserved may come back empty, and what woke this
                # claim (a NOTIFY) be ready after that claim looked: look again after it.
                self._look_again = self._look_again or self._reserved > 0
                return 0, []
            self._reserved += room
        try:
            return room, self.claim(room)
        finally:
            with self._lock:
                self._reserved -= room
                again, self._look_again = self._look_again, False
            if again:
                self._wake.set()

    def _span(self, claim: Claim) -> Any:
        """Return the span of this execution of ``claim`` (a no-op without OpenTelemetry)."""
        return telemetry.run_span(
            run_id=str(claim.run_id),
            workflow_name=claim.workflow_name,
            attempt=claim.attempt,
            queue=claim.queue,
            worker_id=self.id,
            trace_context=claim.trace_context,
        )

    def _may_claim_after(self, claim: Claim) -> bool:
        """Return whether the end of ``claim`` should wake the loop to claim again at once.

        On PostgreSQL every new piece of ready work NOTIFYs the loop, so it is woken only
        when it stopped claiming for want of a free slot, when the run's queue has limits
        or its workflow a per-key limit (a finished run frees a place there, and nothing
        says so), or when it is stopping or in burst mode (it counts the runs in flight).
        Waking it after every run would cost a claim's round trip, at the moment the run's
        result is being read.
        """
        return (
            self._listener is None
            or self._saturated
            or self.burst
            or self._draining.is_set()
            or queue_limits(claim.queue) is not None
            or self._keyed(claim)
        )

    @staticmethod
    def _keyed(claim: Claim) -> bool:
        """Whether ``claim``'s workflow runs under a per-key limit."""
        try:
            return get_workflow(claim.workflow_name).flow is not None
        except WorkflowNotFound:  # unregistered since it was claimed
            return False

    def _vouch(self, run_id: uuid.UUID, seconds: float) -> bool:
        """Whether this worker's lease on ``run_id`` surely lasts ``seconds`` more."""
        with self._lock:
            entry = self._inflight.get(run_id)
        return entry is not None and entry.lease_left() > seconds

    def _interrupt(self, entry: InFlight) -> BaseException | None:
        if entry.lost:
            return LeaseLost(f"The lease of run {entry.claim.run_id} was taken over.")
        if self._draining.is_set():
            return SuspendRun("the worker is shutting down", release=True)
        if entry.cancel_heard and entry.cancel_reason is None:
            # Asked on an async workflow's event loop thread too: read from another thread.
            entry.cancel_reason = call_off_loop(cancel_reason, entry.claim.run_id, alias=self.alias)
        if entry.cancel_reason is not None:
            return Cancelled(entry.cancel_reason)
        return None

    def _db_now(self) -> datetime:
        return clock.now() + self._db_offset  # a test clock moved forward moves it too

    def _hint_wake(self, wake_at: datetime) -> None:
        """Run maintenance when ``wake_at`` comes, if that is before the next round."""
        seconds = (wake_at - self._db_now()).total_seconds()
        self._next_maintenance = min(self._next_maintenance, time.monotonic() + max(0.0, seconds))
        self._wake.set()

    def _give_up(self, claim: Claim) -> None:
        """End this worker's claim as if it had died: expire its lease now.

        The next maintenance round takes the run back and counts a recovery, so a run
        that cannot make progress (its writes keep failing, it breaks the engine) fails
        after MAX_RECOVERIES attempts instead of being retried forever.
        """
        try:
            released = claims.update_claimed_run(claim, {"lease_expires_at": NOW}, alias=self.alias)
        except Exception:
            logger.warning("Could not give up run %s yet; trying again soon", claim.run_id)
            connections[self.alias].close()
            with self._lock:
                self._unreleased.append(claim)
            return
        if released:  # not when another worker already took it over
            self._next_maintenance = 0.0  # take it back now, not at the next round

    def _retry_give_ups(self) -> None:
        """Give up the claims that could not be given up while the database was down."""
        with self._lock:
            pending, self._unreleased = self._unreleased, []
        for claim in pending:
            self._give_up(claim)  # fenced: a no-op if the lease was already taken back

    # --- the long-running loop --------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; in-flight runs finish their current step and are handed back."""
        self._draining.set()
        self._wake.set()

    def force_stop(self) -> None:
        """Stop now: hand back every run this worker holds, without waiting."""
        self._forced.set()
        self._draining.set()
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Return how many runs this worker is executing (or claiming a slot for)."""
        with self._lock:
            return len(self._inflight) + self._reserved

    def run(self) -> bool:
        """Work until stopped (or, with ``burst``, until nothing is ready); return True if clean.

        Clean means every in-flight run finished or was handed back at a step boundary.
        """
        if not self._start_up():
            return True  # stopped before the database ever answered: nothing was claimed
        listener = self._listener
        keys = [f"q:{queue}" for queue in self.queues]
        trigger_keys = notify_keys()
        if listener is not None:
            listener.subscribe(keys, self._wake.set)
            listener.subscribe(trigger_keys, self._maintain_soon)
        heartbeat = Heartbeat(
            self.id,
            self._inflight,
            self._lock,
            interval=self.heartbeat_interval,
            lease_seconds=self.lease_seconds,
            alias=self.alias,
        )
        heartbeat.start()
        delay = get_settings().RECORD_STEP_START_AFTER
        self._marker = StartMarks(delay=delay, alias=self.alias, vouch=self._vouch)
        threads = ExecutionThreads(
            self.concurrency, self.process, follow=self.next_here, worker_id=self.id
        )
        self._follows = True
        threads.start()
        logger.info(
            "Worker %s serving %s with concurrency %d", self.id, self.queues, self.concurrency
        )
        clean = False
        try:
            self._loop(threads)
            clean = self._drain()
            return clean
        finally:
            if listener is not None:
                listener.unsubscribe(keys, self._wake.set)
                listener.unsubscribe(trigger_keys, self._maintain_soon)
            heartbeat.stop()
            self._follows = False
            threads.stop(join=clean)
            marker, self._marker = self._marker, None
            if marker is not None:
                marker.stop()
            self._unregister()
            observe.forget(self)

    def _maintain_soon(self) -> None:  # called from the listener's thread
        """Run maintenance (which dispatches event triggers) on the next loop."""
        self._next_maintenance = 0.0
        self._wake.set()

    def _loop(self, threads: ExecutionThreads) -> None:
        failures = 0
        while not self._draining.is_set():
            self._wake.clear()
            try:
                if self._unreleased:
                    self._retry_give_ups()
                if time.monotonic() >= self._next_maintenance:
                    self.maintain()
                free, claims = self._claim_free(self.concurrency)
                failures = 0
            except _DB_ERRORS as exc:
                failures += 1
                # The first failure is often a connection the server dropped while this
                # worker was idle (a restart): closed below, the next try reconnects at once.
                # The listener wakes us when it reconnects: the database is back.
                self._wait_for_database(exc, min(self.poll_interval * (failures - 1), 10.0))
                continue
            self._saturated = len(claims) >= free
            for claim in claims:
                threads.put(claim)
            if self.burst and not claims and self.in_flight == 0:
                logger.info("Worker %s: nothing left to run (burst mode)", self.id)
                return
            if claims and len(claims) == free:
                self._wake.wait(self.poll_interval)  # slots are full: wait for one to free
                continue
            pause = max(0.0, min(self.poll_interval, self._next_maintenance - time.monotonic()))
            self._wake.wait(pause)

    def _drain(self) -> bool:
        deadline = time.monotonic() + self.shutdown_timeout
        while self.in_flight and time.monotonic() < deadline and not self._forced.is_set():
            self._wake.wait(0.1)
            self._wake.clear()
        if not self.in_flight:
            return True
        try:
            released = release_worker_runs(self.id, alias=self.alias)
            logger.warning("Worker %s handed back %d runs still executing", self.id, released)
        except _DB_ERRORS:
            logger.warning(
                "Worker %s could not hand back its runs; their leases will expire", self.id
            )
        return False

    def _start_up(self) -> bool:
        """Register and sync the code's schedules, waiting for the database if it is down.

        A worker started while the database restarts (a deploy, a failover) waits for it
        instead of exiting; return False if told to stop first.
        """
        failures = 0
        while not self._draining.is_set():
            try:
                self._register()
                sync_code_schedules(alias=self.alias)
                return True
            except _DB_ERRORS as exc:
                failures += 1
                self._wait_for_database(exc, min(0.5 * failures, 10.0), " at start")
        return False

    def _wait_for_database(self, exc: Exception, pause: float, when: str = "") -> None:
        """Log a database error, drop the connection, and wait ``pause`` seconds.

        Cut short by a stop request or by the listener reconnecting (both set ``_wake``;
        nothing else does before ``run()`` subscribes, so the wait at start is a full one).
        """
        logger.warning(
            "Worker %s: database unavailable%s (%s); retrying in %.1fs", self.id, when, exc, pause
        )
        connections[self.alias].close()
        self._wake.wait(pause)

    def _register(self) -> None:
        register(self.id, queues=self.queues, concurrency=self.concurrency, alias=self.alias)

    def _unregister(self) -> None:
        try:
            mark_stopped(self.id, alias=self.alias)
        except _DB_ERRORS:
            logger.warning("Worker %s could not record that it stopped", self.id)


class _Fold:
    """A run's final outcome stored by the statement that claims the next run (one slot
    reserved for it): ``OutcomeStore`` calls it with the outcome's values."""

    def __init__(self, worker: Worker, finished: Claim) -> None:
        self._worker = worker
        self._finished = finished

    def __call__(self, values: dict[str, Any]) -> bool:
        worker = self._worker
        with worker._lock:
            exclude = list(worker._inflight)
        workflows = sorted(registered_workflows())
        if not workflows:  # nothing this worker could claim (its code was unregistered)
            with worker._lock:
                worker._folded[self._finished.run_id] = []
            return claims.update_claimed_run(
                self._finished, values, notify="run", alias=worker.alias
            )
        began, skipped = time.monotonic(), clock.skipped()
        stored, claimed = claims.finish_and_claim(
            self._finished,
            values,
            worker_id=worker.id,
            queues=worker.queues,
            lease_seconds=worker.lease_seconds,
            exclude=exclude,
            workflows=workflows,
            keys_left=worker._saw_keys_left,
            alias=worker.alias,
        )
        if not claimed:
            worker._owe_a_look()  # the statement's claim never looks for keyed runs
        claimed = worker._took(claimed, began, skipped)
        with worker._lock:
            worker._folded[self._finished.run_id] = claimed
        return stored

    def release(self) -> None:
        """Give the reserved slot back, once (the claim, if any, is in flight by now)."""
        with self._worker._lock:
            self._worker._reserved -= 1
