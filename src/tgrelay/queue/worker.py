"""The worker loop: claim jobs with a lease, run their handlers concurrently, record outcomes.

A transactional handler runs inside the transaction that marks its job done, so its database
effects commit exactly once. A non-transactional handler (network I/O, which must not hold
SQLite's write lock) runs first, then its job is completed in a short transaction; if the
worker dies in between the job runs again, so such handlers must tolerate repeats. A
grouped handler is a non-transactional one whose outcomes are committed many at a time:
every job of its kind that finished while the previous commit ran goes into the next one,
so a busy lane pays for one transaction per batch instead of one per job.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypeVar, cast, overload

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import crypto
from tgrelay.clock import Clock, utcnow
from tgrelay.db import write_turns
from tgrelay.db.engine import Database
from tgrelay.observability import Metrics
from tgrelay.queue import retry, store
from tgrelay.queue.models import ALL_KINDS, Finish, Job, JobState, Lane
from tgrelay.queue.pacing import DEFAULT_PACING, Pacing, pause

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, Job], Awaitable[None]]
# A non-transactional handler may return a Finish (e.g. recording an HTTP call's outcome).
NonTransactionalHandler = Callable[[Job], Awaitable[Finish | None]]
# A grouped kind: `run` does a job's work outside any transaction and says what to record
# (None: nothing); `commit` records many jobs' outcomes in the transaction completing them.
GroupedRun = Callable[[Job], Awaitable[Any]]
GroupedCommit = Callable[[AsyncConnection, Sequence[Any]], Awaitable[None]]
# Outcomes per grouped commit: one transaction stays short, and far below SQLite's limit of
# 32,766 bound parameters.
MAX_GROUP = 500

# Errors a database outage raises; the loop outlives them. Anything else is a bug in a handler
# (recorded on its job) or in the loop itself (which should crash loudly).
TRANSIENT_ERRORS = (SQLAlchemyError, OSError)
MAX_BACKOFF_SECONDS = 30.0
T = TypeVar("T")
# Waits until the event is set or the seconds pass; True when the event was set.
Wait = Callable[[asyncio.Event, float], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class Transactional:
    """A handler that runs in the job's transaction, given its connection."""

    handler: Handler


@dataclass(frozen=True, kw_only=True)
class NonTransactional:
    """A handler that runs outside any transaction, before its job is completed."""

    handler: NonTransactionalHandler


@dataclass(frozen=True, kw_only=True)
class Grouped:
    """A handler that runs outside any transaction; outcomes commit many jobs at a time."""

    run: GroupedRun
    commit: GroupedCommit


Registration = Transactional | NonTransactional | Grouped


class Registry:
    """Which handler runs each job kind; a kind nobody registered makes its jobs dead."""

    def __init__(self) -> None:
        self._handlers: dict[str, Registration] = {}

    @overload
    def register(
        self, kind: str, handler: Handler, *, transactional: Literal[True] = True
    ) -> None: ...

    @overload
    def register(
        self, kind: str, handler: NonTransactionalHandler, *, transactional: Literal[False]
    ) -> None: ...

    def register(
        self,
        kind: str,
        handler: Handler | NonTransactionalHandler,
        *,
        transactional: bool = True,
    ) -> None:
        self._add(
            kind,
            Transactional(handler=cast(Handler, handler))
            if transactional
            else NonTransactional(handler=cast(NonTransactionalHandler, handler)),
        )

    def register_grouped(
        self,
        kind: str,
        run: Callable[[Job], Awaitable[T | None]],
        commit: Callable[[AsyncConnection, Sequence[T]], Awaitable[None]],
    ) -> None:
        """Register a kind whose outcomes (those `run` returns, None aside) commit in groups."""
        self._add(kind, Grouped(run=run, commit=commit))

    def _add(self, kind: str, registration: Registration) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = registration

    def lookup(self, kind: str) -> Registration | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)


class _LeaseLost(Exception):
    """The job was rescued and handed to another worker while this one ran it."""


class Worker:
    """Runs jobs until stopped: one loop task claiming, one task per job running.

    Each run is observed in `job_runs` with an outcome: done, retry, dead, rescheduled,
    lease_lost (another worker holds the job now), outcome_lost (the database failed while
    recording it; the lease will expire) or cancelled (by `stop`).
    """

    def __init__(
        self,
        db: Database,
        registry: Registry,
        *,
        worker_id: str | None = None,
        concurrency: int = 8,
        lease_seconds: float = 60,
        pacing: Pacing = DEFAULT_PACING,
        clock: Clock = utcnow,
        policy: retry.RetryPolicy = retry.DEFAULT_POLICY,
        metrics: Metrics | None = None,
        rescue_interval: float = 5.0,
        lane: Lane = ALL_KINDS,
        after_job: Callable[[], None] | None = None,
        monotonic: Callable[[], float] | None = None,
        wait: Wait | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_seconds <= 0 or rescue_interval <= 0:
            raise ValueError("lease_seconds and rescue_interval must be positive")
        self.db = db
        self.registry = registry
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        # The sleeps between looks when nobody wakes the worker: what a job enqueued by another
        # process may wait. An idle worker only reads (store.any_due); it claims when told.
        self.pacing = pacing
        self.clock = clock
        self.policy = policy
        self.metrics = metrics
        self.rescue_interval = rescue_interval
        self.lane = lane
        self.after_job = after_job  # called whenever a job run ends, whatever its outcome
        # Time for pauses and timers (None: the event loop's), and how to pause: parameters
        # so that tests drive the idle loop without sleeping.
        self._monotonic = monotonic
        self._wait = wait or wait_for
        # Rescue, lease renewal and the gauge share one timer, short enough that a running
        # job's lease is renewed at least twice before it could lapse.
        self.maintenance_interval = min(rescue_interval, lease_seconds / 3)
        self._random = random.Random()
        self._running: dict[asyncio.Task[None], Job] = {}
        self._committers: dict[str, _GroupCommitter] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._stop_timeout = 10.0
        self._finished: asyncio.Event | None = None
        self._log = log.bind(worker_id=self.worker_id)

    def notify(self) -> None:
        """Claim now instead of after the idle sleep (call after enqueueing in this process)."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run jobs until `stop()`; cancelling this task releases held jobs too."""
        if self._finished is not None:
            raise RuntimeError("a Worker runs once; create another")
        self._finished = asyncio.Event()
        self._log.info(
            "worker.started", concurrency=self.concurrency, kinds=sorted(self.registry.kinds)
        )
        try:
            # Jobs finish work already accepted: on SQLite their writes go before new requests'.
            with write_turns.ahead():
                await self._loop()
            if self._running:
                await asyncio.wait(set(self._running), timeout=self._stop_timeout)
        finally:
            await self._abandon_running()
            self._finished.set()
            self._log.info("worker.stopped")

    async def stop(self, timeout: float = 10) -> None:
        """Stop claiming, give running jobs `timeout` seconds, then cancel and release the rest."""
        self._stop_timeout = timeout
        self._stopping = True
        self._wake.set()
        if self._finished is not None:
            await self._finished.wait()

    async def _loop(self) -> None:
        now = self._monotonic or asyncio.get_running_loop().time
        next_maintenance = quiet_since = now()
        failures = 0
        # Look (a read) before claiming (a write) after an idle sleep nobody woke, and after a
        # claim that found the lane empty: wakes are hints (the webhook lane is woken after
        # every job of the other lane, which may have emitted events), and an empty claim
        # still takes SQLite's one write lock.
        probe = False
        while not self._stopping:
            self._wake.clear()
            if now() >= next_maintenance:
                await self._maintain()
                next_maintenance = now() + self.maintenance_interval
            free = self.concurrency - len(self._running)
            try:
                claimed = await self._claim(free, probe=probe)
            except TRANSIENT_ERRORS as exc:
                failures += 1
                backoff = min(self.pacing.busy_seconds * 2**failures, MAX_BACKOFF_SECONDS)
                self._log.warning("worker.db_error", error=str(exc), retry_in=backoff)
                await self._sleep(backoff)
                continue
            failures = 0
            if claimed > 0:
                quiet_since = now()
            probe = free > 0 and claimed == 0
            if free == 0 or claimed < free:
                until_maintenance = max(next_maintenance - now(), 0)
                idle = pause(self.pacing, quiet_since=quiet_since, now=now())
                woken = await self._sleep(min(idle, until_maintenance))
                if woken:  # a hint of work: look often again
                    quiet_since = now()
                probe = probe or not woken
            # A full batch suggests more are due: claim again at once.

    async def _claim(self, free: int, *, probe: bool) -> int:
        if free <= 0:
            return 0
        if probe and not await store.any_due(self.db, now=self.clock(), lane=self.lane):
            return 0
        jobs = await store.claim(
            self.db,
            worker_id=self.worker_id,
            limit=free,
            now=self.clock(),
            lease_seconds=self.lease_seconds,
            lane=self.lane,
        )
        for job in jobs:
            task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
            self._running[task] = job
            task.add_done_callback(self._on_job_done)
        return len(jobs)

    def _on_job_done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a free slot, and maybe the next job of the same key
        if self.after_job is not None:
            self.after_job()
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("job.crashed", error=repr(exc), exc_info=exc)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep until woken or `seconds` pass; True when woken."""
        return await self._wait(self._wake, seconds)

    async def _maintain(self) -> None:
        """Rescue jobs of vanished workers, renew our own leases, refresh the jobs gauge."""
        now = self.clock()
        try:
            rescued = await store.rescue_expired(self.db, now=now)
            if rescued:
                self._log.warning("jobs.rescued", count=rescued)
            await store.extend_leases(
                self.db,
                [job.id for job in self._running.values()],
                worker_id=self.worker_id,
                now=now,
                lease_seconds=self.lease_seconds,
            )
            if self.metrics is not None:
                async with self.db.engine.connect() as conn:
                    counts = await store.count_by_state(conn)
                for state, count in counts.items():
                    self.metrics.jobs.labels(state=state.value).set(count)
        except TRANSIENT_ERRORS as exc:
            self._log.warning("worker.maintenance_failed", error=str(exc))

    async def _execute(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "cancelled"
        try:
            outcome = await self._run_handler(job)
        finally:
            if self.metrics is not None:
                self.metrics.job_runs.labels(kind=job.kind, outcome=outcome).observe(
                    loop.time() - started
                )

    async def _run_handler(self, job: Job) -> str:
        """Run the job's handler and record what happened; returns the outcome label."""
        fields = {"job_id": job.id, "kind": job.kind, "attempt": job.attempts}
        registration = self.registry.lookup(job.kind)
        try:
            if registration is None:
                raise retry.PermanentFailure(f"no handler registered for job kind {job.kind!r}")
            if isinstance(registration, Transactional):
                async with self.db.transaction() as conn:
                    await registration.handler(conn, job)
                    await self._complete(conn, job)
            elif isinstance(registration, NonTransactional):
                finish = await registration.handler(job)
                async with self.db.transaction() as conn:
                    if finish is not None:
                        await finish(conn)
                    await self._complete(conn, job)
            else:
                outcome = await registration.run(job)
                if not await self._committer(job.kind, registration).complete(job, outcome):
                    raise _LeaseLost
        except _LeaseLost:
            self._log.warning("job.lease_lost", **fields)
            return "lease_lost"
        except Exception as exc:  # Reschedule and PermanentFailure included
            return await self._record(job, exc, fields)
        self._log.debug("job.done", **fields)
        return "done"

    def _committer(self, kind: str, registration: Grouped) -> _GroupCommitter:
        committer = self._committers.get(kind)
        if committer is None:
            committer = self._committers[kind] = _GroupCommitter(self, registration.commit)
        return committer

    async def _complete(self, conn: AsyncConnection, job: Job) -> None:
        if not await store.complete(conn, job.id, worker_id=self.worker_id, now=self.clock()):
            raise _LeaseLost  # rolls the transactional handler's effects back

    async def _record(self, job: Job, exc: Exception, fields: dict[str, object]) -> str:
        """Store a failed or rescheduled run; if the database is down, the lease will expire."""
        now = self.clock()
        decided = asyncio.get_running_loop().time()
        error = describe(exc)
        try:
            async with self.db.transaction() as conn:
                if isinstance(exc, retry.Reschedule):
                    held = await store.reschedule(
                        conn,
                        job,
                        worker_id=self.worker_id,
                        run_at=now + timedelta(seconds=exc.delay),
                        reason=exc.reason,
                        payload=exc.payload,
                    )
                    if held and exc.record is not None:
                        await exc.record(conn)
                    state: JobState | None = JobState.PENDING if held else None
                elif isinstance(exc, retry.PermanentFailure):
                    held = await store.mark_dead(
                        conn, job, worker_id=self.worker_id, error=error, now=now
                    )
                    state = JobState.DEAD if held else None
                else:
                    state = await store.fail(
                        conn,
                        job,
                        worker_id=self.worker_id,
                        error=error,
                        now=now,
                        policy=self.policy,
                        rand=self._random.random(),
                    )
        except TRANSIENT_ERRORS as db_exc:
            self._log.error("job.outcome_lost", error=str(db_exc), job_error=error, **fields)
            return "outcome_lost"
        if state is None:
            self._log.warning("job.lease_lost", error=error, **fields)
            return "lease_lost"
        if isinstance(exc, retry.Reschedule):
            self._log.info("job.rescheduled", delay=exc.delay, reason=exc.reason, **fields)
            # Claim again when it is due rather than up to a poll interval later: rate-limited
            # sends are rescheduled to the instant their slot opens. Timed from the decision,
            # like its run_at, not from the end of the transaction that stored it.
            asyncio.get_running_loop().call_at(decided + exc.delay, self.notify)
            return "rescheduled"
        if state is JobState.DEAD:
            unexpected = not isinstance(exc, retry.PermanentFailure)
            self._log.error("job.dead", error=error, exc_info=exc if unexpected else None, **fields)
            return "dead"
        self._log.warning("job.failed", error=error, exc_info=exc, **fields)
        return "retry"

    async def _abandon_running(self) -> None:
        """Cancel the jobs still running and hand them back for another worker to take."""
        if not self._running:
            return
        abandoned = dict(self._running)
        for task in abandoned:
            task.cancel()
        await asyncio.gather(*abandoned, return_exceptions=True)
        # A commit under way may still complete some of them; release only what it leaves.
        await asyncio.gather(
            *(committer.idle() for committer in self._committers.values()),
            return_exceptions=True,
        )
        job_ids = sorted(job.id for job in abandoned.values())
        try:
            released = await store.release(self.db, job_ids, worker_id=self.worker_id)
        except TRANSIENT_ERRORS as exc:
            self._log.error("jobs.release_failed", job_ids=job_ids, error=str(exc))
        else:
            self._log.info("jobs.released", job_ids=job_ids, count=released)


class _GroupCommitter:
    """Completes a grouped kind's jobs, with their outcomes, in shared transactions.

    The first job to finish starts a commit at once; jobs finishing while it runs wait for
    the next, which takes them all (up to MAX_GROUP). Under load each commit holds as many
    jobs as finished during the last one; alone, a job waits for no one.
    """

    def __init__(self, worker: Worker, commit: GroupedCommit) -> None:
        self._worker = worker
        self._commit_outcomes = commit
        self._pending: list[tuple[Job, Any, asyncio.Future[bool]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def complete(self, job: Job, outcome: Any) -> bool:
        """Commit the job done with its outcome; False when the worker no longer held it."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((job, outcome, done))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="group-commit")
        return await done

    async def idle(self) -> None:
        """Wait for the commit under way, if any."""
        if self._flushing is not None:
            await asyncio.shield(self._flushing)

    async def _flush(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
                await self._commit(group)
        finally:
            self._flushing = None

    async def _commit(self, group: list[tuple[Job, Any, asyncio.Future[bool]]]) -> None:
        worker = self._worker
        try:
            async with worker.db.transaction() as conn:
                held = await store.complete_many(
                    conn,
                    [job.id for job, _, _ in group],
                    worker_id=worker.worker_id,
                    now=worker.clock(),
                )
                outcomes = [
                    outcome for job, outcome, _ in group if job.id in held and outcome is not None
                ]
                if outcomes:
                    await self._commit_outcomes(conn, outcomes)
        except Exception as exc:
            if len(group) > 1:
                # One outcome that cannot be recorded must not hold back the others: each
                # alone, so only its own job fails (and runs again).
                for item in group:
                    await self._commit([item])
                return
            for _, _, done in group:
                if not done.done():
                    done.set_exception(exc)
            return
        for job, _, done in group:
            if not done.done():
                done.set_result(job.id in held)


async def wait_for(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; True when it was set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


def describe(exc: Exception) -> str:
    """The error kept in `jobs.last_error`: type and message, bot tokens redacted as in logs."""
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return crypto.redact_tokens(text)


def default_worker_id() -> str:
    """Host, process and a random part: unique per Worker, readable in `jobs.locked_by`."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
