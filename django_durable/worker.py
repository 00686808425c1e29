"""The worker: claim runnable runs, hold their leases, execute them, store the outcome.

``Worker.run_once()`` does one round in the calling thread (tests use it); ``run()`` is
the long-lived loop of ``manage.py run_workflow_worker``: a thread pool executes runs,
a heartbeat thread renews leases, and on PostgreSQL a LISTEN connection wakes the loop
as soon as work is committed, with polling as the fallback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import (
    DatabaseError,
    InterfaceError,
    close_old_connections,
    connections,
    reset_queries,
    transaction,
)
from django.utils import timezone

from . import db, db_channels, db_tree, engine, queues, schedules, serialization, triggers
from .conf import get_settings
from .exceptions import Cancelled, LeaseLost, SuspendRun
from .models import RunStatus, WorkerProcess
from .notify import get_listener

logger = logging.getLogger("django_durable")

_DB_ERRORS = (DatabaseError, InterfaceError)


@dataclasses.dataclass(eq=False, slots=True)
class InFlight:
    """A claim this worker is executing."""

    claim: db.Claim
    lost: bool = False  # the heartbeat found the lease taken over
    # durable.cancel() asked the run to stop: the reason, once known.
    cancel_reason: str | None = None
    # A NOTIFY said the run was cancelled; the reason is read when the run next asks.
    cancel_heard: bool = False

    def __post_init__(self) -> None:
        self.cancel_reason = self.claim.cancel_reason

    def heard_cancel(self) -> None:
        """Note a cancellation NOTIFY (called from the listener's thread)."""
        self.cancel_heard = True


def _positive(value: float | None, default: float, what: str) -> float:
    if value is None:
        return default
    if value <= 0:
        raise ValueError(f"The {what} must be greater than 0, not {value}.")
    return value


def _worker_id() -> str:
    host = socket.gethostname()[:32]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


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
        self.id = _worker_id()
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
        self.shutdown_timeout = (
            conf.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout
        )
        if self.shutdown_timeout < 0:
            raise ValueError("The shutdown timeout cannot be negative.")
        self.max_recoveries = conf.MAX_RECOVERIES
        self._inflight: dict[uuid.UUID, InFlight] = {}
        # Claims whose give-up could not be written (the database was down): handed back
        # as soon as it answers again, rather than when their leases run out.
        self._unreleased: list[db.Claim] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._draining = threading.Event()
        self._forced = threading.Event()
        self._heartbeat_stop = threading.Event()
        self._next_maintenance = 0.0
        # The last claim filled every free slot: more may be ready, claim when one frees.
        self._saturated = False
        self._db_offset = timedelta(0)  # database time minus local time, from the last claim
        self._thread_state = threading.local()
        # PostgreSQL's LISTEN connection (None on SQLite): wakes the loop, hears cancels.
        self._listener = get_listener(self.alias)

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
        """
        self._next_maintenance = time.monotonic() + self.poll_interval
        woken = db.wake_due_runs(alias=self.alias)
        recovered = db.recover_expired_runs(
            max_recoveries=self.max_recoveries, error=self._lost_error(), alias=self.alias
        )
        if woken or recovered:
            logger.debug("worker %s woke %d runs, recovered %s", self.id, woken, recovered)
        for run_id, status in recovered:
            if status == RunStatus.FAILED:
                logger.error("Run %s failed: its worker was lost too many times", run_id)
            else:
                logger.warning("Run %s lost its worker; it is pending again", run_id)
        triggered = triggers.dispatch_triggers(alias=self.alias)
        if triggered:
            logger.debug("worker %s started %d event-triggered runs", self.id, triggered)
        scheduled = schedules.dispatch_due_schedules(alias=self.alias)
        if scheduled:
            logger.debug("worker %s started %d scheduled runs", self.id, scheduled)

    def _lost_error(self) -> str:
        message = (
            f"The run's worker was lost more than {self.max_recoveries} times in a row "
            "(killed, out of memory, stalled past its lease, or unable to write to the "
            "database). Something in the run may crash its worker; see the worker logs. "
            "Raise DJANGO_DURABLE['MAX_RECOVERIES'] to allow more takeovers."
        )
        info = {"type": "django_durable.WorkerLost", "message": message, "traceback": ""}
        return serialization.dumps(info, what="The lost-worker error")

    def claim(self, limit: int) -> list[db.Claim]:
        """Claim up to ``limit`` ready runs and mark them in flight."""
        if limit <= 0:
            return []
        with self._lock:
            exclude = list(self._inflight)
        limited = {q: limits for q in self.queues if (limits := queues.limits_of(q)) is not None}
        free = [name for name in self.queues if name not in limited]
        claims = []
        if free:
            claims = db.claim_runs(
                worker_id=self.id,
                queues=free,
                limit=limit,
                lease_seconds=self.lease_seconds,
                exclude=exclude,
                alias=self.alias,
            )
        for name, limits in limited.items():
            if len(claims) >= limit:
                break
            claims += queues.claim_limited(
                name,
                limits,
                worker_id=self.id,
                limit=limit - len(claims),
                lease_seconds=self.lease_seconds,
                exclude=exclude,
                alias=self.alias,
            )
        with self._lock:
            for claim in claims:
                entry = self._inflight[claim.run_id] = InFlight(claim)
                if self._listener is not None:
                    self._listener.subscribe([f"x:{claim.run_id}"], entry.heard_cancel)
        if claims:
            self._db_offset = claims[-1].db_now - timezone.now()
        return claims

    def process(self, claim: db.Claim) -> engine.Outcome | None:
        """Execute a claimed run and store its outcome; never raises."""
        with self._lock:
            entry = self._inflight.setdefault(claim.run_id, InFlight(claim))
        self._check_connections()
        try:
            outcome = engine.execute(
                claim, alias=self.alias, interrupt=lambda: self._interrupt(entry)
            )
            self._store(claim, outcome)
            return outcome
        except Exception:
            logger.exception("Worker %s could not execute run %s", self.id, claim.run_id)
            self._give_up(claim)
            return None
        except BaseException:  # a KeyboardInterrupt raised by the run: not ours to keep
            self._give_up(claim)
            raise
        finally:
            if django_settings.DEBUG:
                reset_queries()  # the query log would grow for ever
            self._check_connections()
            with self._lock:
                done = self._inflight.pop(claim.run_id, None)
            if done is not None and self._listener is not None:
                self._listener.unsubscribe([f"x:{claim.run_id}"], done.heard_cancel)
            if self._may_claim_after(claim):
                self._wake.set()

    def _may_claim_after(self, claim: db.Claim) -> bool:
        """Return whether the end of ``claim`` should wake the loop to claim again at once.

        On PostgreSQL every new piece of ready work NOTIFYs the loop, so it is woken only
        when it stopped claiming for want of a free slot, when the run's queue has limits
        (a finished run frees a place there, and nothing says so), or when it is stopping
        or in burst mode (it counts the runs in flight). Waking it after every run would
        cost a claim's round trip, at the moment the run's result is being read.
        """
        return (
            self._listener is None
            or self._saturated
            or self.burst
            or self._draining.is_set()
            or queues.limits_of(claim.queue) is not None
        )

    def _check_connections(self) -> None:
        """Close this thread's broken or expired connections, as Django does per request.

        At once after a database error, otherwise at most once a second: with
        CONN_HEALTH_CHECKS each check costs the next run a ``SELECT 1``, and a run is much
        cheaper than a request.
        """
        errors = any(
            connection.errors_occurred for connection in connections.all(initialized_only=True)
        )
        now = time.monotonic()
        if errors or now - getattr(self._thread_state, "checked_at", 0.0) >= 1.0:
            close_old_connections()
            self._thread_state.checked_at = now

    def _interrupt(self, entry: InFlight) -> BaseException | None:
        if entry.lost:
            return LeaseLost(f"The lease of run {entry.claim.run_id} was taken over.")
        if self._draining.is_set():
            return SuspendRun("the worker is shutting down", release=True)
        if entry.cancel_heard and entry.cancel_reason is None:
            entry.cancel_reason = db.cancel_reason(entry.claim.run_id, alias=self.alias)
        if entry.cancel_reason is not None:
            return Cancelled(entry.cancel_reason)
        return None

    def _store(self, claim: db.Claim, outcome: engine.Outcome) -> None:
        """Write the outcome with a fenced update (and delete rewound records)."""
        ended = {**db.released_values(), "wake_at": None, "wake_on": None, "waiting_for": ""}
        kind = outcome.kind
        if kind == "abandoned":
            self._give_up(claim)
            return
        if kind in ("completed", "failed", "cancelled"):
            status = {
                "completed": RunStatus.COMPLETED,
                "failed": RunStatus.FAILED,
                "cancelled": RunStatus.CANCELLED,
            }[kind]
            values = {
                **ended,
                "status": status,
                "result": outcome.result,
                "error": outcome.error,
                "finished_at": db.NOW,
            }
            stored = self._finish(claim, values, children=outcome.children)
        elif kind == "released":
            values = {**ended, "status": RunStatus.PENDING, "available_at": db.NOW}
            stored = db.update_claimed_run(claim, values, notify="queue", alias=self.alias)
        else:  # suspended, or retry of the whole workflow
            stored = self._suspend(claim, outcome, ended)
        if not stored:
            logger.warning(
                "Run %s was taken over by another worker; this worker's %s outcome is discarded",
                claim.run_id,
                kind,
            )

    def _finish(self, claim: db.Claim, values: dict[str, Any], *, children: bool) -> bool:
        """End a run for good; wake its parent if it waits for it; close its children."""
        if claim.parent_id is None and not children:  # one statement: nothing else to touch
            return db.update_claimed_run(claim, values, notify="run", alias=self.alias)
        with transaction.atomic(using=self.alias):
            d = db.dialect(self.alias)
            if claim.parent_id is not None:
                db_tree.lock_run(d, claim.parent_id)  # parent before child, as everywhere
            stored = db.update_claimed_run(claim, values, notify="run", alias=self.alias)
            if stored:
                if claim.parent_id is not None:
                    db_tree.wake_parent(d, claim.parent_id, claim.run_id)
                db_tree.close_children(claim.run_id, alias=self.alias)
        return stored

    def _suspend(self, claim: db.Claim, outcome: engine.Outcome, ended: dict[str, Any]) -> bool:
        values: dict[str, Any] = {**ended, "waiting_for": outcome.reason[:255]}
        if outcome.kind == "retry":
            values.update(attempt=claim.attempt + 1, error=outcome.error)
        wake_at = outcome.wake_at
        due = wake_at is not None and wake_at <= self._db_now()
        if due:  # no need to wait for the next maintenance round
            values.update(status=RunStatus.PENDING, available_at=wake_at)
        elif outcome.shielded:
            values.update(status=RunStatus.WAITING, wake_at=wake_at)
        else:
            # A cancellation asked for meanwhile wakes the run at once, so that it stops.
            values.update(
                status=db.Raw(
                    "CASE WHEN cancel_requested_at IS NULL THEN 'waiting' ELSE 'pending' END"
                ),
                available_at=db.Raw(
                    "CASE WHEN cancel_requested_at IS NULL THEN available_at ELSE NOW() END"
                ),
                wake_at=wake_at,
            )
        if outcome.wake_on is not None and not due:
            return self._suspend_waiting(claim, values, outcome)
        with transaction.atomic(using=self.alias):
            stored = db.update_claimed_run(
                claim, values, notify="queue" if due else None, alias=self.alias
            )
            if stored and outcome.kind == "retry" and outcome.rewind_to is not None:
                db_tree.rewind(claim.run_id, outcome.rewind_to, alias=self.alias)
        if stored and wake_at is not None and not due:
            self._hint_wake(wake_at)
        return stored

    def _suspend_waiting(
        self, claim: db.Claim, values: dict[str, Any], outcome: engine.Outcome
    ) -> bool:
        """Suspend on an event or message, unless it arrived while the run got here."""
        assert outcome.wake_on is not None
        waiting = db_channels.suspend_waiting(
            claim, values, wake_on=outcome.wake_on, floor=outcome.floor, alias=self.alias
        )
        if waiting is None:  # it arrived: the run is pending again, claim it soon
            self._hint_wake(self._db_now())
            return True
        if waiting and outcome.wake_at is not None:
            self._hint_wake(outcome.wake_at)
        return waiting

    def _db_now(self) -> datetime:
        return timezone.now() + self._db_offset

    def _hint_wake(self, wake_at: datetime) -> None:
        """Run maintenance when ``wake_at`` comes, if that is before the next round."""
        seconds = (wake_at - self._db_now()).total_seconds()
        self._next_maintenance = min(self._next_maintenance, time.monotonic() + max(0.0, seconds))
        self._wake.set()

    def _give_up(self, claim: db.Claim) -> None:
        """End this worker's claim as if it had died: expire its lease now.

        The next maintenance round takes the run back and counts a recovery, so a run
        that cannot make progress (its writes keep failing, it breaks the engine) fails
        after MAX_RECOVERIES attempts instead of being retried forever.
        """
        try:
            released = db.update_claimed_run(claim, {"lease_expires_at": db.NOW}, alias=self.alias)
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
        """Return how many runs this worker is executing."""
        with self._lock:
            return len(self._inflight)

    def run(self) -> bool:
        """Work until stopped (or, with ``burst``, until nothing is ready); return True if clean.

        Clean means every in-flight run finished or was handed back at a step boundary.
        """
        if not self._start_up():
            return True  # stopped before the database ever answered: nothing was claimed
        listener = self._listener
        keys = [f"q:{queue}" for queue in self.queues]
        trigger_keys = triggers.notify_keys()
        if listener is not None:
            listener.subscribe(keys, self._wake.set)
            listener.subscribe(trigger_keys, self._maintain_soon)
        heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="durable-heartbeat", daemon=True
        )
        heartbeat.start()
        work: queue.SimpleQueue[db.Claim | None] = queue.SimpleQueue()
        threads = [
            threading.Thread(
                target=self._execute_loop, args=(work,), name=f"durable-run-{n}", daemon=True
            )
            for n in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        logger.info(
            "Worker %s serving %s with concurrency %d", self.id, self.queues, self.concurrency
        )
        clean = False
        try:
            self._loop(work)
            clean = self._drain()
            return clean
        finally:
            if listener is not None:
                listener.unsubscribe(keys, self._wake.set)
                listener.unsubscribe(trigger_keys, self._maintain_soon)
            self._heartbeat_stop.set()
            for _ in threads:
                work.put(None)
            if clean:
                for thread in threads:
                    thread.join(5)
            self._unregister()

    def _maintain_soon(self) -> None:  # called from the listener's thread
        """Run maintenance (which dispatches event triggers) on the next loop."""
        self._next_maintenance = 0.0
        self._wake.set()

    def _execute_loop(self, work: queue.SimpleQueue[db.Claim | None]) -> None:
        """Execute claims from ``work`` until told to stop; close this thread's connections."""
        try:
            while (claim := work.get()) is not None:
                try:
                    self.process(claim)
                except BaseException:
                    # Only a signal would stop a thread here, and signals go to the main
                    # thread: a run raised this. Losing the thread would leave the worker
                    # claiming runs it never executes.
                    logger.exception("Worker %s: run %s raised", self.id, claim.run_id)
        finally:
            connections.close_all()

    def _loop(self, work: queue.SimpleQueue[db.Claim | None]) -> None:
        failures = 0
        while not self._draining.is_set():
            self._wake.clear()
            try:
                if self._unreleased:
                    self._retry_give_ups()
                if time.monotonic() >= self._next_maintenance:
                    self.maintain()
                free = self.concurrency - self.in_flight
                claims = self.claim(free)
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
                work.put(claim)
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
            released = db.release_worker_runs(self.id, alias=self.alias)
            logger.warning("Worker %s handed back %d runs still executing", self.id, released)
        except _DB_ERRORS:
            logger.warning(
                "Worker %s could not hand back its runs; their leases will expire", self.id
            )
        return False

    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.wait(self.heartbeat_interval):
            with self._lock:
                entries = list(self._inflight.values())
            try:
                held = db.extend_leases(
                    self.id, [e.claim.run_id for e in entries], self.lease_seconds, alias=self.alias
                )
                WorkerProcess.objects.using(self.alias).filter(pk=self.id).update(
                    last_seen_at=timezone.now()
                )
            except Exception:
                logger.warning("Worker %s could not renew its leases", self.id, exc_info=True)
                connections[self.alias].close()
                continue
            with self._lock:
                for entry in entries:
                    if self._inflight.get(entry.claim.run_id) is not entry:
                        continue  # finished meanwhile
                    if entry.claim.run_id not in held:
                        entry.lost = True
                    elif held[entry.claim.run_id] is not None:
                        entry.cancel_reason = held[entry.claim.run_id]
        connections[self.alias].close()

    def _start_up(self) -> bool:
        """Register and sync the code's schedules, waiting for the database if it is down.

        A worker started while the database restarts (a deploy, a failover) waits for it
        instead of exiting; return False if told to stop first.
        """
        failures = 0
        while not self._draining.is_set():
            try:
                self._register()
                schedules.sync_code_schedules(alias=self.alias)
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
        # Idempotent: a retry after a lost reply finds the row the first try wrote.
        WorkerProcess.objects.using(self.alias).update_or_create(
            id=self.id,
            defaults={
                "hostname": socket.gethostname()[:255],
                "pid": os.getpid(),
                "queues": self.queues,
                "concurrency": self.concurrency,
            },
        )

    def _unregister(self) -> None:
        try:
            WorkerProcess.objects.using(self.alias).filter(pk=self.id).update(
                stopped_at=timezone.now()
            )
        except _DB_ERRORS:
            logger.warning("Worker %s could not record that it stopped", self.id)
