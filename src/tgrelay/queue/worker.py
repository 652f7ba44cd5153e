"""The worker loop: claim jobs with a lease, run their handlers concurrently, record outcomes.

A transactional handler runs inside the transaction that marks its job done, so its database
effects commit exactly once. A non-transactional handler (network I/O, which must not hold
SQLite's write lock) runs first, then its job is completed in a short transaction; if the
worker dies in between the job runs again, so such handlers must tolerate repeats. A
grouped handler is a non-transactional one whose outcomes are committed many at a time:
every job of its kind that finished while the previous commit ran goes into the next one,
so a busy lane pays for one transaction per batch instead of one per job.

A batching worker (`batch_size`) claims many transactional jobs at once, each ordering
key's head with the jobs queued behind it, and runs them in order in shared transactions,
each sized to last about `batch_seconds`, so that other writers (the intake) wait little
for SQLite's one write lock. If any job of a transaction fails, the transaction is undone
and the rest of the batch runs one job per transaction, so each outcome is recorded alone.
On SQLite the transaction that completes a batch's last jobs also claims the task's next
batch: one BEGIN and COMMIT (one turn at the write lock) per batch instead of two. Likewise
a claim the loop asks for while a grouped commit is under way is made in that commit.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, cast, overload

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import crypto, tracing
from tgrelay.clock import Clock, utcnow
from tgrelay.db import write_turns
from tgrelay.db.engine import Database, writing_as
from tgrelay.observability import Metrics
from tgrelay.queue import retry, store
from tgrelay.queue.models import DEFAULT_QUEUE, Finish, Job, JobState
from tgrelay.queue.pacing import DEFAULT_PACING, Pacing, pause

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, Job], Awaitable[None]]
# A batched kind: `prepare` reads and computes what it can before the transaction (which holds
# SQLite's one write lock); `handler` runs the jobs, in their order, in the transaction.
BatchPrepare = Callable[[Sequence[Job]], Awaitable[Any]]
BatchHandler = Callable[[AsyncConnection, Sequence[Job], Any], Awaitable[None]]
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
# How long a batching worker's transaction should run handlers before it commits: SQLite has
# one write lock, and the intake's next batch waits for it (issue 16: intake p99 ≤ 10 ms while
# a backlog drains). Its COMMIT comes on top.
DEFAULT_BATCH_SECONDS = 0.005
FIRST_CHUNK = 16  # jobs in a batching worker's first transaction, before it has timed one
# The fewest jobs a batching worker's transaction takes (when that many are claimed). Batched
# handlers write in bulk, so a transaction's time is mostly its fixed statements, stretched
# by whatever else the event loop runs while each one waits for the database: shrinking
# below this bought no shorter transactions, only more of them (with an endpoint subscribed
# they shrank to one update each: 107 updates/s, 425/s with this floor, the same hour).
LEAST_CHUNK = 16
# A sleep at most this long is not shortened for a timer: the look after it finds the timer.
TIMER_LOOK_SECONDS = 0.05

T = TypeVar("T")
# Waits until the event is set or the seconds pass; True when the event was set.
Wait = Callable[[asyncio.Event, float], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class Transactional:
    """A handler that runs in the job's transaction, given its connection."""

    handler: Handler


@dataclass(frozen=True, kw_only=True)
class Batched:
    """A transactional handler of many jobs at once (one alone when they run one by one)."""

    prepare: BatchPrepare
    handler: BatchHandler


@dataclass(frozen=True, kw_only=True)
class NonTransactional:
    """A handler that runs outside any transaction, before its job is completed."""

    handler: NonTransactionalHandler


@dataclass(frozen=True, kw_only=True)
class Grouped:
    """A handler that runs outside any transaction; outcomes commit many jobs at a time."""

    run: GroupedRun
    commit: GroupedCommit


Registration = Transactional | Batched | NonTransactional | Grouped


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

    def register_batched(
        self,
        kind: str,
        handler: Callable[[AsyncConnection, Sequence[Job], T], Awaitable[None]],
        *,
        prepare: Callable[[Sequence[Job]], Awaitable[T]],
    ) -> None:
        """Register a transactional kind whose handler takes a batch of its jobs, in order,
        with what `prepare` made of them outside the transaction."""
        self._add(kind, Batched(prepare=prepare, handler=handler))

    def _add(self, kind: str, registration: Registration) -> None:
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = registration

    def lookup(self, kind: str) -> Registration | None:
        return self._handlers.get(kind)

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._handlers)

    @property
    def transactional_kinds(self) -> frozenset[str]:
        """The kinds a batching worker may run many to a transaction."""
        return frozenset(
            kind
            for kind, handler in self._handlers.items()
            if isinstance(handler, Transactional | Batched)
        )


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
        queue: str = DEFAULT_QUEUE,
        batch_size: int = 0,
        batch_seconds: float | Callable[[int], float] = DEFAULT_BATCH_SECONDS,
        between_transactions: Callable[[float], Awaitable[None]] | None = None,
        monotonic: Callable[[], float] | None = None,
        wait: Wait | None = None,
        claim_at_least: int = 1,
        concurrency_now: Callable[[], int] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 1 <= claim_at_least <= concurrency:
            raise ValueError("claim_at_least must be between 1 and concurrency")
        if lease_seconds <= 0 or rescue_interval <= 0:
            raise ValueError("lease_seconds and rescue_interval must be positive")
        if batch_size < 0:
            raise ValueError("batch_size must not be negative")
        if not callable(batch_seconds):
            if batch_seconds <= 0:
                raise ValueError("batch_seconds must be positive")
            batch_seconds = _fixed(float(batch_seconds))
        self.db = db
        self.registry = registry
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        # While jobs run, the next claim waits until this many slots are free: each claim
        # (and the read of its jobs' data that follows) costs a write transaction, and a
        # busy lane freeing one slot at a time would pay it for every job.
        self.claim_at_least = claim_at_least
        # How many tasks may run at the next claim, at most `concurrency`, asked before each
        # (None: always `concurrency`): the updates worker's runs fewer during a burst.
        self._concurrency_now = concurrency_now
        self.lease_seconds = lease_seconds
        # The sleeps between looks when nobody wakes the worker: what a job enqueued by another
        # process may wait. An idle worker only reads (store.next_run_at); it claims when told,
        # or when a timer (a job enqueued for later) is due.
        self.pacing = pacing
        self.clock = clock
        self.policy = policy
        self.metrics = metrics
        self.rescue_interval = rescue_interval
        self.queue = queue
        # 0: a task per job. Otherwise each claim takes up to batch_size jobs for one task.
        self.batch_size = batch_size
        # How long each transaction of a batch should take, asked after each with the number
        # of the claim's jobs still to run: a rule may move it (the updates worker's shortens
        # its transactions while the intake is busy, unless it is behind).
        self.batch_seconds: Callable[[int], float] = batch_seconds
        self._chunk_size = min(batch_size, FIRST_CHUNK) or 1  # jobs per transaction, adapted
        # Awaited after each transaction of a batch, given how long it took: where the
        # process gives others (the intake) their share before the next one.
        self.between_transactions = between_transactions
        # Time for pauses and timers (None: the event loop's), and how to pause: parameters
        # so that tests drive the idle loop without sleeping.
        self._monotonic = monotonic
        self._wait = wait or wait_for
        # Rescue, lease renewal and the gauge share one timer, short enough that a running
        # job's lease is renewed at least twice before it could lapse.
        self.maintenance_interval = min(rescue_interval, lease_seconds / 3)
        self._random = random.Random()
        self._running: dict[asyncio.Task[object], list[Job]] = {}
        self._committers: dict[str, _GroupCommitter] = {}
        self._wake = asyncio.Event()
        # What the last claim's look before claiming found: (earliest ready run_at,) or None.
        self._probed: tuple[datetime | None] | None = None
        # A batch's task claimed its next batch and found none: the loop looks first.
        self._look_before_claiming = False
        # Claims that ride on grouped commits (`_claim_beside_commit`): the loop's requests
        # counted, the latest one a committed claim answered, and how many jobs it took.
        self._claims_asked = 0
        self._claims_answered = 0
        self._claimed_beside = 0
        self._commit_ended: asyncio.Future[None] | None = None  # the next commit's end
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
            with write_turns.ahead(), writing_as(self.queue):
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
        # claim that found the queue empty: wakes are hints (a worker is woken whenever jobs of
        # its queue may be due, and when its own jobs end), and an empty claim still takes
        # SQLite's one write lock.
        probe = False
        while not self._stopping:
            self._wake.clear()
            if now() >= next_maintenance:
                await self._maintain()
                next_maintenance = now() + self.maintenance_interval
            free = self.allowed_now() - len(self._running)
            if self._running and free < self.claim_at_least:
                free = 0  # let more finish (each end wakes the loop): one claim for many
            if free > 0 and self._look_before_claiming:
                probe, self._look_before_claiming = True, False
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
            if free == 0 or claimed < (self.batch_size or free):
                until_maintenance = max(next_maintenance - now(), 0)
                idle = pause(self.pacing, quiet_since=quiet_since, now=now())
                if free > 0 and idle > TIMER_LOOK_SECONDS:
                    # A timer due sooner than the next look would wait for it. A busy look
                    # comes soon enough: reading for it after every claim delayed the claim a
                    # wake asked for meanwhile (the webhooks lane's, by ~8 ms at p50).
                    idle = min(idle, await self._until_next_timer())
                woken = await self._sleep(min(idle, until_maintenance))
                if woken:  # a hint of work: look often again
                    quiet_since = now()
                probe = probe or not woken
            # A full batch suggests more are due: claim again at once.

    def allowed_now(self) -> int:
        """How many jobs (or batches) this worker may run at once now: `concurrency`, or
        less while `concurrency_now` says so."""
        if self._concurrency_now is None:
            return self.concurrency
        return max(1, min(self._concurrency_now(), self.concurrency))

    async def _claim(self, free: int, *, probe: bool) -> int:
        if free <= 0:
            return 0
        if (beside := await self._claimed_beside_commits()) is not None:
            return beside
        if self._stopping:  # begun while the loop waited for a commit: claim no more
            return 0
        self._probed = None
        if probe:
            earliest = await store.next_run_at(self.db, queue=self.queue)
            if earliest is None or earliest > self.clock():
                self._probed = (earliest,)  # the sleep that follows needs it too
                return 0
        jobs = await store.claim(self.db, **self._claim_arguments(free))
        if not jobs:
            return 0
        if self.batch_size:
            self._start(self._execute_batch(jobs), jobs, name=f"batch-{jobs[0].id}")
        else:
            self._start_each(jobs)
        return len(jobs)

    async def _claimed_beside_commits(self) -> int | None:
        """While a grouped commit is under way, ask it to claim for the free slots in its
        own transaction, and wait for it (or, if it had passed that point, the next one):
        how many jobs the claim took. None when no commit is under way or none answered:
        then the loop claims alone.

        The claim would have waited for that commit's turn at the write lock anyway; riding
        on it saves a transaction. In bench/e2e.py the webhooks lane's claims and its
        outcomes' commits took turns, each waiting ~7-9 ms for the other before waiting for
        SQLite's lock itself."""
        asked = self._claims_asked = self._claims_asked + 1
        for _ in range(2):  # a commit that began before the request, then one after it
            if not any(committer.busy for committer in self._committers.values()):
                break
            if self._commit_ended is None:
                self._commit_ended = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._commit_ended)
            if self._claims_answered >= asked:
                return self._claimed_beside
        self._claims_answered = asked  # claimed alone, below
        return None

    async def _claim_beside_commit(
        self, conn: AsyncConnection, *, finishing: int
    ) -> tuple[int, store.Claimed] | None:
        """In a grouped commit's transaction, the claim the loop asked for (if it asked):
        for the free slots, counting the `finishing` jobs whose outcomes it commits."""
        asked = self._claims_asked
        if asked <= self._claims_answered or self._stopping or self.batch_size:
            return None
        free = self.allowed_now() - len(self._running) + finishing
        if free < self.claim_at_least:
            return None
        return asked, await store.start_claimable(conn, **self._claim_arguments(free))

    async def _start_claimed_beside(self, asked: int, claimed: store.Claimed) -> None:
        """Once the commit that claimed them is in: run the jobs, and answer the request."""
        jobs = claimed.jobs()
        if self._stopping:  # the loop has stopped: nobody would run or release them
            try:
                await store.release(self.db, [job.id for job in jobs], worker_id=self.worker_id)
            except TRANSIENT_ERRORS as exc:  # their leases lapse, and rescue hands them back
                self._log.warning("jobs.release_failed", count=len(jobs), error=str(exc))
            return
        self._start_each(jobs)
        self._claimed_beside = len(jobs)
        self._claims_answered = max(self._claims_answered, asked)

    def _end_commit(self) -> None:
        ended, self._commit_ended = self._commit_ended, None
        if ended is not None and not ended.done():
            ended.set_result(None)

    def _claim_arguments(self, free: int) -> dict[str, Any]:
        """A claim's arguments (store.claim, store.start_claimable) with `free` slots."""
        limit, runs = free, store.NO_RUNS
        if self.batch_size:
            # Heads and the runs behind them share one batch: a chat's backlog comes whole.
            limit = self.batch_size
            runs = store.Runs(kinds=self.registry.transactional_kinds, max_jobs=self.batch_size)
        return {
            "worker_id": self.worker_id,
            "limit": limit,
            "now": self.clock(),
            "lease_seconds": self.lease_seconds,
            "queue": self.queue,
            "runs": runs,
        }

    async def _claim_next_batch(self, conn: AsyncConnection) -> store.Claimed | None:
        """On SQLite, in the transaction completing a batch's last jobs, its task's next
        batch: the claim shares that transaction's BEGIN and COMMIT instead of paying for its
        own, and the write lock is taken once per batch, not twice. None when the worker
        stops or runs fewer batches now, and on PostgreSQL, where batches run side by side
        and claiming in them was slower (bench/process.py --db postgres, four pairs: ~4,200
        against ~4,850 updates/s): the loop claims then."""
        if not self.db.is_sqlite or self._stopping or len(self._running) > self.allowed_now():
            return None
        return await store.start_claimable(conn, **self._claim_arguments(1))

    async def _until_next_timer(self) -> float:
        """Seconds until the queue's earliest ready job is due. One due already (another
        claimer holds it, or it waits its turn) gets a busy pause, not a loop of claims. A
        database error leaves the sleep to the idle pacing."""
        if self._probed is not None:
            (earliest,) = self._probed
        else:
            try:
                earliest = await store.next_run_at(self.db, queue=self.queue)
            except TRANSIENT_ERRORS:
                return math.inf
        if earliest is None:
            return math.inf
        seconds = (earliest - self.clock()).total_seconds()
        return seconds if seconds > 0 else self.pacing.busy_seconds

    def _start_each(self, jobs: list[Job]) -> None:
        """A task per claimed job."""
        for job in jobs:
            self._start(self._execute(job), [job], name=f"job-{job.id}")

    def _start(self, work: Coroutine[Any, Any, object], jobs: list[Job], *, name: str) -> None:
        task: asyncio.Task[object] = asyncio.create_task(work, name=name)
        self._running[task] = jobs
        task.add_done_callback(self._on_job_done)

    def _on_job_done(self, task: asyncio.Task[object]) -> None:
        self._running.pop(task, None)
        self._wake.set()  # a free slot, and maybe the next job of the same key
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
                [job.id for jobs in self._running.values() for job in jobs],
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

    async def _execute(self, job: Job) -> str:
        """Run one job alone and record its outcome; returns the outcome's label."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome = "cancelled"
        try:
            # What the job enqueues and emits, and every line it logs, joins its trace.
            with tracing.bound(job.trace_id):
                outcome = await self._run_handler(job)
        finally:
            if self.metrics is not None:
                self.metrics.job_runs.labels(kind=job.kind, outcome=outcome).observe(
                    loop.time() - started
                )
        return outcome

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
            elif isinstance(registration, Batched):
                prepared = await registration.prepare([job])
                async with self.db.transaction() as conn:
                    await registration.handler(conn, [job], prepared)
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

    async def _execute_batch(self, jobs: list[Job]) -> None:
        """Run claimed jobs in their order, in transactions sized to last about batch_seconds.

        Each transaction, once its handlers have run, starts preparing the next one's jobs
        (a read, off the write lock): that read then runs while this transaction commits,
        instead of after it, in the time the worker waits for its COMMIT to come back.
        """
        loop = asyncio.get_running_loop()
        remaining = jobs
        size = self._chunk_size
        ahead: asyncio.Task[list[Any]] | None = None  # preparing the next chunk: remaining[:size]
        try:
            while remaining:
                chunk = self._transactional_prefix(remaining[:size])
                if not chunk:
                    # A job that must run outside a transaction: it and the rest go one by
                    # one, so that its key's later jobs wait if it fails.
                    await self._one_by_one(remaining)
                    return
                ran = [job for _, kind_run in chunk for job in kind_run]
                last = len(ran) == len(remaining)
                following: list[Job] = []
                claimed_next = False
                started = loop.time()
                try:
                    made, ahead = ahead, None
                    prepared = await (made if made is not None else _prepare(chunk))
                    async with self.db.transaction() as conn:
                        handlers_started = loop.time()
                        for (registration, kind_run), each in zip(chunk, prepared, strict=True):
                            if isinstance(registration, Batched):
                                with tracing.bound_many([job.trace_id for job in kind_run]):
                                    await registration.handler(conn, kind_run, each)
                            else:
                                for job in kind_run:
                                    with tracing.bound(job.trace_id):
                                        await registration.handler(conn, job)
                        handling = loop.time() - handlers_started
                        held = await store.complete_many(
                            conn,
                            [job.id for job in ran],
                            worker_id=self.worker_id,
                            now=self.clock(),
                        )
                        if len(held) != len(ran):
                            raise _LeaseLost  # undo all: each job's outcome is recorded alone
                        following = remaining[len(ran) :]
                        if last:
                            next_batch = await self._claim_next_batch(conn)
                            if next_batch is not None:
                                # Made into jobs under the lock (store.claim waits until
                                # after it), so that their read can start before the COMMIT.
                                following, claimed_next = next_batch.jobs(), True
                        # Sized by the handlers' time alone: BEGIN and COMMIT (an fsync) cost
                        # the same however many jobs ran, and counting them shrank batches to
                        # one job each.
                        size = self._chunk_size = next_chunk_size(
                            len(ran),
                            handling,
                            target=self.batch_seconds(len(following)),
                            least=min(LEAST_CHUNK, self.batch_size),
                            most=self.batch_size,
                        )
                        ahead = _prepare_ahead(self._transactional_prefix(following[:size]))
                except Exception:
                    # Undone (the next batch's claim too): what ran and what is left go one by
                    # one, each outcome its own. A preparation started ahead is left to end
                    # unused.
                    ahead = None
                    await self._one_by_one(remaining)
                    return
                remaining = following
                if claimed_next:
                    self._hold(remaining)
                took = loop.time() - started
                self._observe_batch(ran, took)
                if self.between_transactions is not None:
                    await self.between_transactions(took)
        finally:
            if ahead is not None:  # the worker stopping (cancelled) between transactions
                ahead.cancel()

    def _hold(self, jobs: list[Job]) -> None:
        """A batch's task's next batch (claimed in its last transaction), now this task's to
        renew and release."""
        if not jobs:
            self._look_before_claiming = True  # none were due a moment ago
        task = asyncio.current_task()
        if task is not None and task in self._running:
            self._running[task] = jobs

    def _transactional_prefix(self, jobs: list[Job]) -> Chunk:
        """The leading jobs that may share a transaction, as runs of one kind each."""
        runs: Chunk = []
        for job in jobs:
            registration = self.registry.lookup(job.kind)
            if not isinstance(registration, Transactional | Batched):
                break
            if runs and runs[-1][1][0].kind == job.kind:
                runs[-1][1].append(job)
            else:
                runs.append((registration, [job]))
        return runs

    async def _one_by_one(self, jobs: list[Job]) -> None:
        """Run jobs alone, in order; a key whose job did not end done keeps its later jobs back."""
        stopped_keys: set[str] = set()
        held_back: list[Job] = []
        for job in jobs:
            if job.ordering_key in stopped_keys:
                held_back.append(job)
                continue
            outcome = await self._execute(job)
            if outcome != "done" and job.ordering_key is not None:
                stopped_keys.add(job.ordering_key)
        if held_back:
            # Pending again with their attempt given back; they wait for their predecessor.
            try:
                await store.release(
                    self.db, [job.id for job in held_back], worker_id=self.worker_id
                )
            except TRANSIENT_ERRORS as exc:
                # The database away (a restart): their leases lapse and rescue hands them
                # back, attempts counted, like the jobs of a worker that died.
                self._log.warning("jobs.release_failed", count=len(held_back), error=str(exc))

    def _observe_batch(self, jobs: list[Job], seconds: float) -> None:
        # One line per transaction: a line per job cost a tenth of a job's time.
        with tracing.bound_many([job.trace_id for job in jobs]):
            self._log.debug("jobs.done", count=len(jobs), first_job_id=jobs[0].id, seconds=seconds)
        if self.metrics is not None:
            for job in jobs:
                self.metrics.job_runs.labels(kind=job.kind, outcome="done").observe(
                    seconds / len(jobs)
                )

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
                    if held and exc.record is not None:
                        await exc.record(conn)
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
        job_ids = sorted(job.id for jobs in abandoned.values() for job in jobs)
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

    @property
    def busy(self) -> bool:
        """Whether a commit is under way (or about to start)."""
        return self._flushing is not None

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
        try:
            await self._commit_group(group)
        finally:
            self._worker._end_commit()

    async def _commit_group(self, group: list[tuple[Job, Any, asyncio.Future[bool]]]) -> None:
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
                # The worker's next claim, if its loop asked for one meanwhile.
                beside = await worker._claim_beside_commit(conn, finishing=len(group))
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
        if beside is not None:
            await worker._start_claimed_beside(*beside)
        for job, _, done in group:
            if not done.done():
                done.set_result(job.id in held)


Chunk = list[tuple[Transactional | Batched, list[Job]]]  # runs of one kind each, in order


async def _prepare(chunk: Chunk) -> list[Any]:
    """What each batched run of a transaction's jobs prepares before it (None for others)."""
    return [
        await registration.prepare(kind_run) if isinstance(registration, Batched) else None
        for registration, kind_run in chunk
    ]


def _prepare_ahead(chunk: Chunk) -> asyncio.Task[list[Any]] | None:
    """`_prepare(chunk)` started now, to be awaited by its transaction; None when no run
    of it has anything to prepare (or there is no chunk)."""
    if not any(isinstance(registration, Batched) for registration, _ in chunk):
        return None
    task = asyncio.create_task(_prepare(chunk))
    # A failure is raised where the transaction awaits it; one left unused is not reported.
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def _fixed(seconds: float) -> Callable[[int], float]:
    return lambda waiting: seconds


def next_chunk_size(ran: int, elapsed: float, *, target: float, least: int, most: int) -> int:
    """How many jobs the next transaction should run for its handlers to take about `target`,
    within [least, most].

    Halfway (geometrically) between what ran and what would have fit: one slow or fast
    transaction moves the size without swinging it.
    """
    fits = ran * target / max(elapsed, 1e-6)
    return max(least, 1, min(most, round(math.sqrt(ran * fits))))


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
