"""Contract tests for `tgrelay.queue.worker.Worker`, run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.databases import sqlite_with_schema
from tgrelay.clock import utcnow
from tgrelay.db import engine as db_engine
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.observability import Metrics
from tgrelay.queue import pacing, retry, store, worker
from tgrelay.queue.models import Job, JobState, NewJob
from tgrelay.queue.worker import Registry, Worker
from tgrelay.testing.clock import Clock

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

WAIT_LIMIT = 15.0  # seconds before a wait gives up; a bound against hangs, not a speed claim


@pytest.fixture
def clock() -> Clock:
    """A clock that stands at START until a test moves it."""
    return Clock(start=START)


def make_worker(database: Database, registry: Registry, clock: Any, **options: Any) -> Worker:
    defaults: dict[str, Any] = {
        "pacing": pacing.Pacing.steady(0.01),
        "rescue_interval": 1.0,
        "policy": retry.RetryPolicy(base_delay=1, jitter=0),
    }
    return Worker(database, registry, clock=clock, **(defaults | options))


@asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(worker.run()) for worker in workers]
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop(timeout=5)
        await asyncio.gather(*tasks)


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(WAIT_LIMIT):
        while not await condition():
            await asyncio.sleep(0.01)


async def enqueue(database: Database, *jobs: NewJob, now: Any, max_attempts: int = 3) -> list[int]:
    async with database.transaction() as conn:
        return await store.enqueue(conn, jobs, now=now(), default_max_attempts=max_attempts)


async def get(database: Database, job_id: int) -> Job:
    async with database.transaction() as conn:
        job = await store.get(conn, job_id)
    assert job is not None
    return job


def in_state(database: Database, job_id: int, state: JobState) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await get(database, job_id)).state is state

    return check


async def workspace_names(database: Database) -> list[str]:
    async with database.transaction() as conn:
        rows = await conn.execute(select(tables.workspaces.c.name).order_by(tables.workspaces.c.id))
        return [row.name for row in rows]


async def add_workspace(conn: AsyncConnection, name: str) -> None:
    await conn.execute(tables.workspaces.insert().values(id=name, name=name, created_at=START))


async def test_worker_runs_a_transactional_handler_and_completes_its_job(
    database: Database, clock: Clock
) -> None:
    """The handler's writes and the job's completion commit together."""

    async def create_workspace(conn: AsyncConnection, job: Job) -> None:
        await add_workspace(conn, job.payload["name"])

    registry = Registry()
    registry.register("create_workspace", create_workspace)
    [job_id] = await enqueue(
        database, NewJob(kind="create_workspace", payload={"name": "ws_a"}), now=clock
    )
    async with running(make_worker(database, registry, clock, worker_id="w1")):
        await wait_until(in_state(database, job_id, JobState.DONE))
    job = await get(database, job_id)
    assert (job.attempts, job.locked_by, job.finished_at) == (1, "w1", START)
    assert await workspace_names(database) == ["ws_a"]


async def test_a_workers_transactions_are_its_queues_in_the_write_lock_metric(
    tmp_path: Path, clock: Clock
) -> None:
    """On SQLite each committed write transaction tells its writer: a worker's (claims,
    jobs, maintenance) are its queue's, anyone else's keep the default."""
    database = await sqlite_with_schema(tmp_path / "queue.db")
    writers: list[str] = []
    database.on_write_lock_held = lambda writer, _seconds: writers.append(writer)

    async def create_workspace(conn: AsyncConnection, job: Job) -> None:
        await add_workspace(conn, job.payload["name"])

    registry = Registry()
    registry.register("create_workspace", create_workspace)
    try:
        [job_id] = await enqueue(
            database,
            NewJob(kind="create_workspace", payload={"name": "ws_a"}, queue="reports"),
            now=clock,
        )
        async with running(make_worker(database, registry, clock, queue="reports")):
            await wait_until(in_state(database, job_id, JobState.DONE))
    finally:
        await database.dispose()
    # The test's own (its enqueue, its reads of the job) and the worker's.
    assert set(writers) == {"transactions", "reports"}


async def test_concurrent_workers_keep_per_key_order_and_never_overlap_a_key(
    database: Database,
) -> None:
    """Four workers run 200 jobs over 10 keys: each key's jobs one at a time, in order."""
    runs: list[tuple[str, int]] = []
    active: dict[str, int] = {}
    overlaps: list[tuple[str, int, int]] = []
    failed_once: set[int] = set()

    async def record(job: Job) -> None:
        key, seq = job.ordering_key or "", int(job.payload["seq"])
        if key in active:
            overlaps.append((key, active[key], seq))
        active[key] = seq
        try:
            await asyncio.sleep(0.001)
            if seq % 7 == 3 and job.id not in failed_once:  # a retry must hold its key back
                failed_once.add(job.id)
                raise RuntimeError("flaky")
            runs.append((key, seq))
        finally:
            del active[key]

    registry = Registry()
    registry.register("record", record, transactional=False)
    jobs = [
        NewJob(kind="record", payload={"seq": n // 10}, ordering_key=f"chat:{n % 10}")
        for n in range(200)
    ]
    await enqueue(database, *jobs, now=utcnow)
    policy = retry.RetryPolicy(base_delay=0.01, jitter=0)
    workers = [make_worker(database, registry, utcnow, policy=policy) for _ in range(4)]

    async def all_done() -> bool:
        async with database.transaction() as conn:
            return (await store.count_by_state(conn))[JobState.DONE] == len(jobs)

    async with running(*workers):
        await wait_until(all_done)
    assert overlaps == []
    assert sorted(runs) == [(f"chat:{k}", seq) for k in range(10) for seq in range(20)]
    for k in range(10):
        assert [seq for key, seq in runs if key == f"chat:{k}"] == list(range(20))


async def test_failing_transactional_handler_keeps_none_of_its_writes(
    database: Database, clock: Clock
) -> None:
    """A handler that writes then raises leaves nothing behind; its retry's writes are kept once."""
    calls: list[int] = []

    async def flaky(conn: AsyncConnection, job: Job) -> None:
        calls.append(job.attempts)
        await add_workspace(conn, f"ws_{job.attempts}")
        if job.attempts == 1:
            raise RuntimeError("boom after writing")

    registry = Registry()
    registry.register("flaky", flaky)
    [job_id] = await enqueue(database, NewJob(kind="flaky", payload={}), now=clock)
    worker = make_worker(database, registry, clock)

    async def failed_once() -> bool:
        job = await get(database, job_id)
        return job.state is JobState.PENDING and job.attempts == 1

    async with running(worker):
        await wait_until(failed_once)
        assert await workspace_names(database) == []
        job = await get(database, job_id)
        assert (job.last_error, job.run_at) == (
            "RuntimeError: boom after writing",
            START + timedelta(seconds=1),
        )
        clock.advance(1)
        worker.notify()
        await wait_until(in_state(database, job_id, JobState.DONE))
    assert calls == [1, 2]
    assert await workspace_names(database) == ["ws_2"]


async def test_exhausted_job_is_dead_and_runs_again_after_rerun(
    database: Database, clock: Clock
) -> None:
    """After its last failed attempt the job is listed as dead; rerun makes it run to done."""
    healthy = False

    async def sometimes(job: Job) -> None:
        if not healthy:
            raise ValueError(f"attempt {job.attempts} failed")

    registry = Registry()
    registry.register("sometimes", sometimes, transactional=False)
    [job_id] = await enqueue(
        database, NewJob(kind="sometimes", payload={}), now=clock, max_attempts=2
    )
    worker = make_worker(database, registry, clock)
    async with running(worker):

        async def failed_once() -> bool:
            return (await get(database, job_id)).last_error == "ValueError: attempt 1 failed"

        await wait_until(failed_once)
        clock.advance(1)
        worker.notify()
        await wait_until(in_state(database, job_id, JobState.DEAD))
        async with database.transaction() as conn:
            dead = await store.list_jobs(conn, state=JobState.DEAD)
        assert [(job.id, job.attempts, job.last_error) for job in dead] == [
            (job_id, 2, "ValueError: attempt 2 failed")
        ]
        healthy = True
        async with database.transaction() as conn:
            assert await store.rerun(conn, job_id, now=clock())
        worker.notify()
        await wait_until(in_state(database, job_id, JobState.DONE))
    assert (await get(database, job_id)).attempts == 1


async def test_reschedule_runs_the_job_later_without_using_an_attempt(
    database: Database, clock: Clock
) -> None:
    """A handler raising Reschedule gets its job back at the asked time, attempt not counted."""
    calls = 0

    async def rate_limited(conn: AsyncConnection, job: Job) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise retry.Reschedule(5, "429: retry after 5")

    registry = Registry()
    registry.register("send", rate_limited)
    [job_id] = await enqueue(database, NewJob(kind="send", payload={}), now=clock, max_attempts=1)
    worker = make_worker(database, registry, clock)
    async with running(worker):

        async def rescheduled() -> bool:
            return (await get(database, job_id)).last_error is not None

        await wait_until(rescheduled)
        job = await get(database, job_id)
        assert (job.state, job.attempts, job.run_at, job.last_error) == (
            JobState.PENDING,
            0,
            START + timedelta(seconds=5),
            "429: retry after 5",
        )
        clock.advance(5)
        worker.notify()
        await wait_until(in_state(database, job_id, JobState.DONE))
    assert ((await get(database, job_id)).attempts, calls) == (1, 2)


@pytest.mark.parametrize("held", [True, False])
async def test_a_reschedule_writes_its_record_with_the_job_only_while_held(
    database: Database, clock: Clock, held: bool
) -> None:
    """Reschedule(record=...) commits the record in the transaction that reschedules the job;
    a worker whose job was taken over meanwhile writes neither."""

    calls: list[int] = []

    async def rescheduled_with_note(job: Job) -> None:
        calls.append(job.id)
        if not held:
            async with database.transaction() as conn:
                await conn.execute(
                    update(tables.jobs).where(tables.jobs.c.id == job.id).values(locked_by="thief")
                )

        async def note(conn: AsyncConnection) -> None:
            await add_workspace(conn, "ws_noted")

        raise retry.Reschedule(60, "later", payload={"noted": True}, record=note)

    registry = Registry()
    registry.register("noting", rescheduled_with_note, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="noting", payload={}), now=clock)
    async with running(make_worker(database, registry, clock)):

        async def ran() -> bool:
            return bool(calls)

        await wait_until(ran)
    # Stopping the worker waited for the run to record its outcome.
    job = await get(database, job_id)
    kept = (JobState.PENDING, {"noted": True}, ["ws_noted"])
    expected = kept if held else (JobState.RUNNING, {}, [])
    assert (job.state, job.payload, await workspace_names(database)) == expected


async def test_permanent_failure_kills_the_job_at_once(database: Database, clock: Clock) -> None:
    """PermanentFailure makes the job dead on its first attempt, whatever attempts remain."""

    async def refuse(job: Job) -> None:
        raise retry.PermanentFailure("payload names no chat")

    registry = Registry()
    registry.register("refuse", refuse, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="refuse", payload={}), now=clock)
    async with running(make_worker(database, registry, clock)):
        await wait_until(in_state(database, job_id, JobState.DEAD))
    job = await get(database, job_id)
    assert (job.attempts, job.last_error) == (
        1,
        "tgrelay.queue.retry.PermanentFailure: payload names no chat",
    )


async def test_job_of_an_unknown_kind_dies_with_a_clear_error(
    database: Database, clock: Clock
) -> None:
    """A job nobody registered a handler for is dead after one attempt and says why."""
    [job_id] = await enqueue(database, NewJob(kind="nobody", payload={}), now=clock)
    async with running(make_worker(database, Registry(), clock)):
        await wait_until(in_state(database, job_id, JobState.DEAD))
    job = await get(database, job_id)
    assert (job.attempts, job.last_error) == (
        1,
        "tgrelay.queue.retry.PermanentFailure: no handler registered for job kind 'nobody'",
    )


@pytest.mark.parametrize("transactional", [True, False])
async def test_stop_releases_a_job_whose_handler_never_returns(
    database: Database, clock: Clock, transactional: bool
) -> None:
    """After stop() a stuck job is pending again, attempt given back, its writes undone."""
    started = asyncio.Event()

    async def stuck_in_transaction(conn: AsyncConnection, job: Job) -> None:
        await add_workspace(conn, "ws_stuck")
        started.set()
        await asyncio.Event().wait()

    async def stuck(job: Job) -> None:
        started.set()
        await asyncio.Event().wait()

    registry = Registry()
    if transactional:
        registry.register("stuck", stuck_in_transaction)
    else:
        registry.register("stuck", stuck, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="stuck", payload={}), now=clock)
    pending = await get(database, job_id)
    worker = make_worker(database, registry, clock)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(WAIT_LIMIT):
        await started.wait()
    await worker.stop(timeout=0.05)
    await task
    assert await get(database, job_id) == pending
    assert await workspace_names(database) == []


async def test_stop_lets_running_jobs_finish_within_the_timeout(
    database: Database, clock: Clock
) -> None:
    """A job that ends during the grace period is completed, not released."""
    started, finish = asyncio.Event(), asyncio.Event()

    async def slow(job: Job) -> None:
        started.set()
        await finish.wait()

    registry = Registry()
    registry.register("slow", slow, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="slow", payload={}), now=clock)
    worker = make_worker(database, registry, clock)
    task = asyncio.create_task(worker.run())
    async with asyncio.timeout(WAIT_LIMIT):
        await started.wait()
    stopping = asyncio.create_task(worker.stop(timeout=WAIT_LIMIT))
    await asyncio.sleep(0.05)
    finish.set()
    await stopping
    await task
    assert (await get(database, job_id)).state is JobState.DONE


async def test_worker_rescues_a_job_whose_worker_vanished(database: Database, clock: Clock) -> None:
    """A job left running by a dead worker runs again once its lease has expired."""
    ran: list[int] = []

    async def note(job: Job) -> None:
        ran.append(job.attempts)

    registry = Registry()
    registry.register("note", note, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="note", payload={}), now=clock)
    await store.claim(database, worker_id="ghost", limit=1, now=clock(), lease_seconds=30)
    clock.advance(31)
    async with running(make_worker(database, registry, clock, worker_id="w1")):
        await wait_until(in_state(database, job_id, JobState.DONE))
    assert ran == [2]
    assert (await get(database, job_id)).locked_by == "w1"


async def test_a_long_running_job_keeps_its_lease(database: Database, clock: Clock) -> None:
    """The worker renews the leases of jobs it still runs, so nobody rescues them."""
    started, finish = asyncio.Event(), asyncio.Event()

    async def long(job: Job) -> None:
        started.set()
        await finish.wait()

    registry = Registry()
    registry.register("long", long, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="long", payload={}), now=clock)
    worker = make_worker(database, registry, clock, lease_seconds=30, rescue_interval=0.02)
    async with running(worker):
        async with asyncio.timeout(WAIT_LIMIT):
            await started.wait()
        clock.advance(25)

        async def renewed() -> bool:
            lease = (await get(database, job_id)).lease_expires_at
            return lease == START + timedelta(seconds=55)

        await wait_until(renewed)
        clock.advance(25)
        assert await store.rescue_expired(database, now=clock()) == 0
        finish.set()
        await wait_until(in_state(database, job_id, JobState.DONE))


async def test_lost_lease_leaves_the_new_holders_job_alone(
    database: Database, clock: Clock
) -> None:
    """A worker whose job was taken over meanwhile does not complete it."""
    metrics = Metrics()

    async def overtaken(job: Job) -> None:
        async with database.transaction() as conn:
            await conn.execute(
                update(tables.jobs).where(tables.jobs.c.id == job.id).values(locked_by="thief")
            )

    registry = Registry()
    registry.register("overtaken", overtaken, transactional=False)
    [job_id] = await enqueue(database, NewJob(kind="overtaken", payload={}), now=clock)
    async with running(make_worker(database, registry, clock, metrics=metrics)):

        async def reported() -> bool:
            labels = {"kind": "overtaken", "outcome": "lease_lost"}
            return bool(metrics.registry.get_sample_value("tgrelay_job_run_seconds_count", labels))

        await wait_until(reported)
    job = await get(database, job_id)
    assert (job.state, job.locked_by) == (JobState.RUNNING, "thief")


@pytest.mark.postgres
async def test_lost_lease_rolls_back_a_transactional_handler(
    postgres_database: Database, clock: Clock
) -> None:
    """If the job was taken over while its handler ran, the handler's writes are not kept.

    PostgreSQL only: on SQLite the handler's transaction holds the write lock, so nobody can
    take the job over while it runs.
    """
    database = postgres_database
    metrics = Metrics()

    async def overtaken(conn: AsyncConnection, job: Job) -> None:
        await add_workspace(conn, "ws_lost")
        async with database.transaction() as other:
            await other.execute(
                update(tables.jobs).where(tables.jobs.c.id == job.id).values(locked_by="thief")
            )

    registry = Registry()
    registry.register("overtaken", overtaken)
    [job_id] = await enqueue(database, NewJob(kind="overtaken", payload={}), now=clock)
    async with running(make_worker(database, registry, clock, metrics=metrics)):

        async def reported() -> bool:
            labels = {"kind": "overtaken", "outcome": "lease_lost"}
            return bool(metrics.registry.get_sample_value("tgrelay_job_run_seconds_count", labels))

        await wait_until(reported)
    assert await workspace_names(database) == []
    assert (await get(database, job_id)).locked_by == "thief"


async def test_grouped_jobs_finishing_together_commit_in_one_transaction(
    database: Database, clock: Clock
) -> None:
    """Outcomes of jobs that finish while a commit runs share the next one; None records
    nothing but still completes its job."""
    release = asyncio.Event()
    commits: list[list[str]] = []

    async def run(job: Job) -> str | None:
        await release.wait()
        return None if job.payload["name"] == "skip" else str(job.payload["name"])

    async def commit(conn: AsyncConnection, names: Sequence[str]) -> None:
        commits.append(list(names))
        for name in names:
            await add_workspace(conn, name)

    registry = Registry()
    registry.register_grouped("grouped", run, commit)
    names = [f"ws_{n:02}" for n in range(12)] + ["skip"]
    job_ids = await enqueue(
        database, *(NewJob(kind="grouped", payload={"name": name}) for name in names), now=clock
    )
    async with running(make_worker(database, registry, clock, concurrency=len(names))):

        async def all_running() -> bool:
            async with database.transaction() as conn:
                running_jobs = await store.list_jobs(conn, state=JobState.RUNNING)
            return len(running_jobs) == len(names)

        await wait_until(all_running)
        release.set()
        for job_id in job_ids:
            await wait_until(in_state(database, job_id, JobState.DONE))
    assert sorted(name for names_ in commits for name in names_) == names[:-1]
    assert len(commits) < len(names) - 1, commits  # at least two outcomes shared a commit
    assert await workspace_names(database) == names[:-1]


def _commit_held_for_first(
    in_commit: asyncio.Event, gate: asyncio.Event
) -> Callable[[AsyncConnection, Sequence[str]], Awaitable[None]]:
    """A grouped commit that, for the outcome of the job named "first", sets `in_commit` and
    waits for `gate`."""

    async def commit(conn: AsyncConnection, names: Sequence[str]) -> None:
        if "first" in names:
            in_commit.set()
            await gate.wait()

    return commit


async def _enqueue_first_and_second_a_minute_later(database: Database, clock: Clock) -> int:
    """Grouped jobs "first", due now, and "second", due in 60 s: the second's id."""
    later = clock() + timedelta(seconds=60)
    _, second = await enqueue(
        database,
        NewJob(kind="grouped", payload={"name": "first"}),
        NewJob(kind="grouped", payload={"name": "second"}, run_at=later),
        now=clock,
    )
    return second


async def test_a_claim_asked_for_during_a_grouped_commit_rides_on_it(
    database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job falls due while the first job's outcome is being committed: the worker's loop
    has that commit claim it in its own transaction, so when it runs (once the commit is in)
    the worker's claims of their own are still the first one alone, and the loop, answered,
    sleeps rather than claiming again."""
    in_commit, gate = asyncio.Event(), asyncio.Event()
    ran: list[tuple[str, int]] = []  # (name, the worker's own claims so far)
    steps: list[str] = []  # the loop's own claims and sleeps, and the jobs' runs, in order
    claims = 0
    real_claim = store.claim

    async def counted_claim(*args: Any, **kwargs: Any) -> list[Job]:
        nonlocal claims
        claims += 1
        steps.append("claim")
        return await real_claim(*args, **kwargs)

    async def sleeping(event: asyncio.Event, seconds: float) -> bool:
        steps.append("sleep")
        return await worker.wait_for(event, seconds)

    async def run(job: Job) -> str:
        ran.append((job.payload["name"], claims))
        steps.append(f"ran {job.payload['name']}")
        return str(job.payload["name"])

    monkeypatch.setattr(store, "claim", counted_claim)
    registry = Registry()
    registry.register_grouped("grouped", run, _commit_held_for_first(in_commit, gate))
    second = await _enqueue_first_and_second_a_minute_later(database, clock)
    grouped = make_worker(database, registry, clock, concurrency=4, wait=sleeping)
    async with running(grouped):
        async with asyncio.timeout(WAIT_LIMIT):
            await in_commit.wait()
        clock.advance(60)
        grouped.notify()
        gate.set()
        await wait_until(in_state(database, second, JobState.DONE))
    assert ran == [("first", 1), ("second", 1)]
    after_second = steps[steps.index("ran second") + 1 :]
    assert after_second[0] == "sleep", steps


async def test_jobs_a_grouped_commit_claimed_as_the_worker_stops_are_released(
    database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker begins to stop after a grouped commit claimed a job for its loop and
    before that commit is in: nobody would run the job, so it is released (pending again,
    its attempt given back) rather than left running until its lease lapses."""
    in_commit, gate = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    stopping: list[asyncio.Task[None]] = []
    real_start_claimable = store.start_claimable

    async def stop_once_claimed(*args: Any, **kwargs: Any) -> store.Claimed:
        claimed = await real_start_claimable(*args, **kwargs)
        if claimed.ids and not stopping:  # stop begins while the claim's COMMIT is under way
            stopping.append(asyncio.create_task(grouped.stop(timeout=5)))
        return claimed

    async def run(job: Job) -> str:
        ran.append(job.payload["name"])
        return str(job.payload["name"])

    registry = Registry()
    registry.register_grouped("grouped", run, _commit_held_for_first(in_commit, gate))
    second = await _enqueue_first_and_second_a_minute_later(database, clock)
    grouped = make_worker(database, registry, clock, concurrency=4)
    async with running(grouped):
        async with asyncio.timeout(WAIT_LIMIT):
            await in_commit.wait()
        monkeypatch.setattr(store, "start_claimable", stop_once_claimed)
        clock.advance(60)
        grouped.notify()
        gate.set()
        await wait_until(lambda: _stopped(stopping))
    job = await get(database, second)
    assert (job.state, job.attempts, job.locked_by) == (JobState.PENDING, 0, None)
    assert ran == ["first"]


async def _stopped(stopping: list[asyncio.Task[None]]) -> bool:
    return bool(stopping) and stopping[0].done()


async def test_a_busy_worker_claims_once_enough_slots_are_free(
    database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With claim_at_least=4 of 8 slots, jobs ending one by one are replaced four at a time,
    not one claim (a write transaction) per ended job."""
    released = [asyncio.Event() for _ in range(16)]
    claims: list[tuple[int, int]] = []  # (jobs claimed, jobs left to claim before it)
    claim = store.claim

    async def counted(*args: Any, **kwargs: Any) -> list[Job]:
        jobs = await claim(*args, **kwargs)
        if jobs:
            claims.append((len(jobs), len(released) - sum(taken for taken, _ in claims)))
        return jobs

    async def run(job: Job) -> None:
        await released[job.payload["n"]].wait()

    monkeypatch.setattr(store, "claim", counted)
    registry = Registry()
    registry.register("held", run, transactional=False)
    job_ids = await enqueue(
        database, *(NewJob(kind="held", payload={"n": n}) for n in range(16)), now=clock
    )
    async with running(make_worker(database, registry, clock, concurrency=8, claim_at_least=4)):
        for n, job_id in enumerate(job_ids):
            released[n].set()
            await wait_until(in_state(database, job_id, JobState.DONE))
    assert claims[0] == (8, 16)
    assert all(taken >= min(4, left) for taken, left in claims), claims
    assert sum(taken for taken, _ in claims) == 16


async def test_a_worker_runs_no_more_at_once_than_it_is_allowed_now(
    database: Database, clock: Clock
) -> None:
    """concurrency_now bounds each claim below concurrency, read at each claim: one job
    while it says 1, then four once it says 4 (of 8 slots)."""
    allowed = [1]
    released = [asyncio.Event() for _ in range(8)]

    async def run(job: Job) -> None:
        await released[job.payload["n"]].wait()

    registry = Registry()
    registry.register("held", run, transactional=False)
    job_ids = await enqueue(
        database, *(NewJob(kind="held", payload={"n": n}) for n in range(8)), now=clock
    )

    async def states() -> list[JobState]:
        return [(await get(database, job_id)).state for job_id in job_ids]

    worker = make_worker(
        database, registry, clock, concurrency=8, concurrency_now=lambda: allowed[0]
    )
    async with running(worker):
        await wait_until(in_state(database, job_ids[0], JobState.RUNNING))
        # One claim starts all it takes at once: the others would be running too.
        assert await states() == [JobState.RUNNING] + [JobState.PENDING] * 7
        allowed[0] = 4
        released[0].set()  # its end wakes the worker, which claims again
        await wait_until(in_state(database, job_ids[4], JobState.RUNNING))
        assert await states() == [JobState.DONE] + [JobState.RUNNING] * 4 + [JobState.PENDING] * 3
        for event in released:
            event.set()
        for job_id in job_ids:
            await wait_until(in_state(database, job_id, JobState.DONE))


async def test_an_outcome_that_cannot_be_committed_fails_only_its_own_job(
    database: Database, clock: Clock
) -> None:
    """The group is retried one by one: the bad job runs again, the others are done."""
    release = asyncio.Event()

    async def run(job: Job) -> str:
        await release.wait()
        return str(job.payload["name"])

    async def commit(conn: AsyncConnection, names: Sequence[str]) -> None:
        if "bad" in names:
            raise ValueError("cannot record bad")
        for name in names:
            await add_workspace(conn, name)

    registry = Registry()
    registry.register_grouped("grouped", run, commit)
    names = ["ws_a", "bad", "ws_b"]
    good_a, bad, good_b = await enqueue(
        database, *(NewJob(kind="grouped", payload={"name": name}) for name in names), now=clock
    )
    async with running(make_worker(database, registry, clock)):

        async def all_running() -> bool:
            async with database.transaction() as conn:
                return len(await store.list_jobs(conn, state=JobState.RUNNING)) == len(names)

        await wait_until(all_running)
        release.set()
        await wait_until(in_state(database, good_a, JobState.DONE))
        await wait_until(in_state(database, good_b, JobState.DONE))
        await wait_until(in_state(database, bad, JobState.PENDING))
    failed = await get(database, bad)
    assert failed.last_error == "ValueError: cannot record bad"
    assert await workspace_names(database) == ["ws_a", "ws_b"]


async def test_a_grouped_job_overtaken_meanwhile_records_nothing(
    database: Database, clock: Clock
) -> None:
    """The commit completes only jobs this worker still holds, and records only their outcomes."""
    metrics = Metrics()
    committed: list[str] = []

    async def run(job: Job) -> str:
        if job.payload["name"] == "overtaken":
            async with database.transaction() as conn:
                await conn.execute(
                    update(tables.jobs).where(tables.jobs.c.id == job.id).values(locked_by="thief")
                )
        return str(job.payload["name"])

    async def commit(conn: AsyncConnection, names: Sequence[str]) -> None:
        committed.extend(names)

    registry = Registry()
    registry.register_grouped("grouped", run, commit)
    [job_id] = await enqueue(
        database, NewJob(kind="grouped", payload={"name": "overtaken"}), now=clock
    )
    async with running(make_worker(database, registry, clock, metrics=metrics)):

        async def reported() -> bool:
            labels = {"kind": "grouped", "outcome": "lease_lost"}
            return bool(metrics.registry.get_sample_value("tgrelay_job_run_seconds_count", labels))

        await wait_until(reported)
    assert committed == []
    job = await get(database, job_id)
    assert (job.state, job.locked_by) == (JobState.RUNNING, "thief")


def marking_registry() -> tuple[Registry, asyncio.Event]:
    """A registry whose one kind, "mark", sets the returned event when a job of it runs."""
    registry = Registry()
    done = asyncio.Event()

    async def mark(job: Job) -> None:
        done.set()

    registry.register("mark", mark, transactional=False)
    return registry, done


async def test_notify_wakes_an_idle_worker(database: Database, clock: Clock) -> None:
    """With an hour-long poll interval, notify() alone gets a new job run."""
    registry, done = marking_registry()
    worker = make_worker(
        database, registry, clock, pacing=pacing.Pacing.steady(3600), rescue_interval=30
    )
    async with running(worker):
        await asyncio.sleep(0.05)  # let the worker go idle first
        await enqueue(database, NewJob(kind="mark", payload={}), now=clock)
        worker.notify()
        async with asyncio.timeout(WAIT_LIMIT):
            await done.wait()


class IdleTime:
    """Monotonic time that only the worker's pauses move, and the pauses it asked for.

    A pause returns at once, as if it had run its course (time moves on by it), unless the
    worker was woken; from the `park_at`-th pause on, pauses wait for a wake alone.
    """

    def __init__(self, *, park_at: int) -> None:
        self.now = 0.0
        self.pauses: list[float] = []
        self.park_at = park_at
        self.parked = asyncio.Event()

    def monotonic(self) -> float:
        return self.now

    async def wait(self, wake: asyncio.Event, seconds: float) -> bool:
        self.pauses.append(seconds)
        if len(self.pauses) >= self.park_at:
            self.parked.set()
            await wake.wait()
            return True
        if wake.is_set():
            return True
        self.now += seconds
        await asyncio.sleep(0)  # let the test run, as a real pause would
        return False


async def test_idle_worker_looks_less_and_less_until_notified(
    database: Database, clock: Clock
) -> None:
    """An idle worker's pauses between looks follow the pacing up to its longest, and a
    notify wakes the slowed worker at once, which then looks often again."""
    registry, done = marking_registry()
    rules = pacing.Pacing(busy_seconds=0.01, idle_seconds=1.0, share=0.5)
    idle = IdleTime(park_at=30)
    worker = make_worker(
        database,
        registry,
        clock,
        pacing=rules,
        rescue_interval=3600,
        monotonic=idle.monotonic,
        wait=idle.wait,
    )
    expected, now = [], 0.0
    for _ in range(idle.park_at):
        expected.append(pacing.pause(rules, quiet_since=0.0, now=now))
        now += expected[-1]
    async with running(worker):
        async with asyncio.timeout(WAIT_LIMIT):
            await idle.parked.wait()
        assert idle.pauses == pytest.approx(expected)
        assert (idle.pauses[0], idle.pauses[-1]) == (0.01, 1.0)
        await enqueue(database, NewJob(kind="mark", payload={}), now=clock)
        worker.notify()
        async with asyncio.timeout(WAIT_LIMIT):
            await done.wait()
            while len(idle.pauses) <= idle.park_at:  # the pause after the claim
                await asyncio.sleep(0.01)
        assert idle.pauses[idle.park_at] == 0.01  # woken: back to the busy pause


async def test_wakes_with_nothing_due_only_read(database: Database, clock: Clock) -> None:
    """Once a claim found its lane empty, wakes only look (a read) until a job is due: no empty claim takes the write lock, and a due job still runs."""
    registry, done = marking_registry()
    writes = 0
    open_transaction = database.transaction

    def counted() -> Any:
        nonlocal writes
        writes += 1
        return open_transaction()

    database.transaction = counted  # type: ignore[method-assign]
    worker = make_worker(
        database, registry, clock, pacing=pacing.Pacing.steady(3600), rescue_interval=30
    )
    async with running(worker):
        # Start-up writes twice: the maintenance's rescue, then a claim that finds nothing.
        async with asyncio.timeout(WAIT_LIMIT):
            while writes < 2:
                await asyncio.sleep(0.005)
        settled = writes
        for _ in range(20):
            worker.notify()
            await asyncio.sleep(0.005)
        assert writes == settled
        await enqueue(database, NewJob(kind="mark", payload={}), now=clock)
        worker.notify()
        async with asyncio.timeout(WAIT_LIMIT):
            await done.wait()


async def test_a_busy_worker_sleeps_after_a_claim_without_reading_for_timers(
    database: Database, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its next look is a busy pause away: no read for the earliest timer comes between a
    claim and the sleep after it (it delayed the claim that a wake asked for meanwhile)."""
    registry, done = marking_registry()
    calls: list[str] = []
    real_next_run_at = store.next_run_at

    async def looking(*args: Any, **kwargs: Any) -> Any:
        calls.append("look")
        return await real_next_run_at(*args, **kwargs)

    async def sleeping(event: asyncio.Event, seconds: float) -> bool:
        calls.append("sleep")
        return await worker.wait_for(event, seconds)

    monkeypatch.setattr(store, "next_run_at", looking)
    await enqueue(database, NewJob(kind="mark", payload={}), now=clock)
    busy = pacing.Pacing.steady(worker.TIMER_LOOK_SECONDS)
    async with running(make_worker(database, registry, clock, pacing=busy, wait=sleeping)):
        async with asyncio.timeout(WAIT_LIMIT):
            await done.wait()
            while "sleep" not in calls:
                await asyncio.sleep(0.005)
    assert calls[0] == "sleep"


async def test_worker_reports_runs_and_queue_sizes(database: Database, clock: Clock) -> None:
    """The job_runs histogram counts each outcome; the jobs gauge follows the table."""
    metrics = Metrics()

    async def ok(job: Job) -> None:
        if job.payload["fail"]:
            raise RuntimeError("no")

    registry = Registry()
    registry.register("ok", ok, transactional=False)
    await enqueue(
        database,
        NewJob(kind="ok", payload={"fail": False}),
        NewJob(kind="ok", payload={"fail": True}),
        NewJob(kind="ok", payload={"fail": False}, run_at=START + timedelta(hours=1)),
        now=clock,
        max_attempts=1,
    )

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    async def gauge_settled() -> bool:
        return [sample("tgrelay_jobs", state=state) for state in JobState] == [1, 0, 1, 1]

    worker = make_worker(database, registry, clock, metrics=metrics, rescue_interval=0.05)
    async with running(worker):
        await wait_until(gauge_settled)
    assert [
        sample("tgrelay_job_run_seconds_count", kind="ok", outcome=outcome)
        for outcome in ("done", "dead", "retry")
    ] == [1, 1, None]


async def test_worker_outlives_database_errors(
    tmp_path: Path, clock: Clock, logs: list[MutableMapping[str, Any]]
) -> None:
    """A worker started before its database is usable logs, backs off, then runs the job."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'late.db'}")
    ran = asyncio.Event()

    async def note(job: Job) -> None:
        ran.set()

    registry = Registry()
    registry.register("note", note, transactional=False)
    worker = make_worker(database, registry, clock)
    try:
        async with running(worker):

            async def logged_error() -> bool:
                return any(entry["event"] == "worker.db_error" for entry in logs)

            await wait_until(logged_error)
            async with database.transaction() as conn:
                await conn.run_sync(tables.metadata.create_all)
            await enqueue(database, NewJob(kind="note", payload={}), now=clock)
            worker.notify()
            async with asyncio.timeout(WAIT_LIMIT):
                await ran.wait()
        async with database.transaction() as conn:
            done = await conn.scalar(
                select(func.count()).where(tables.jobs.c.state == JobState.DONE.value)
            )
        assert done == 1
    finally:
        await database.dispose()


def test_registry_refuses_a_second_handler_for_a_kind() -> None:
    """Registering a kind twice is a wiring mistake and fails loudly."""

    async def handler(job: Job) -> None:
        return None

    registry = Registry()
    registry.register("k", handler, transactional=False)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("k", handler, transactional=False)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad payload"), "ValueError: bad payload"),
        (
            retry.PermanentFailure("chat is gone"),
            "tgrelay.queue.retry.PermanentFailure: chat is gone",
        ),
        (
            RuntimeError("POST /bot123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage"),
            "RuntimeError: POST /bot123456:…Dsaw/sendMessage",
        ),
    ],
)
def test_describe_keeps_errors_readable_and_free_of_bot_tokens(
    exc: Exception, expected: str
) -> None:
    """last_error names the exception's type and message, with bot tokens fingerprinted."""
    assert worker.describe(exc) == expected


async def test_batching_worker_keeps_each_keys_order_within_and_across_batches(
    database: Database,
) -> None:
    """300 jobs, one key's long backlog among short ones, in batches of 40: all run once,
    each key's in order, and its writes commit with it."""
    runs: list[tuple[str, int]] = []

    async def record(conn: AsyncConnection, job: Job) -> None:
        key, seq = job.ordering_key or "", int(job.payload["seq"])
        await add_workspace(conn, f"{key}/{seq}")
        runs.append((key, seq))

    registry = Registry()
    registry.register("record", record)
    jobs = [NewJob(kind="record", payload={"seq": n}, ordering_key="long") for n in range(150)]
    jobs += [
        NewJob(kind="record", payload={"seq": n // 30}, ordering_key=f"chat:{n % 30}")
        for n in range(150)
    ]
    await enqueue(database, *jobs, now=utcnow)

    async def all_done() -> bool:
        async with database.transaction() as conn:
            return (await store.count_by_state(conn))[JobState.DONE] == len(jobs)

    async with running(make_worker(database, registry, utcnow, batch_size=40)):
        await wait_until(all_done)
    assert [seq for key, seq in runs if key == "long"] == list(range(150))
    for k in range(30):
        assert [seq for key, seq in runs if key == f"chat:{k}"] == list(range(5))
    assert len(runs) == len(set(runs)) == 300
    assert len(await workspace_names(database)) == 300


async def test_batch_transactions_never_shrink_below_the_least_chunk(database: Database) -> None:
    """Every transaction looks too slow for a budget it can never meet, and the budget is
    asked before each one: sizes still stay at LEAST_CHUNK, not one job each."""
    sizes: list[int] = []
    budgets_asked: list[int] = []

    async def record(conn: AsyncConnection, job: Job) -> None:
        if "test_transaction" not in conn.info:
            conn.info["test_transaction"] = []
            db_engine.after_commit(
                conn, lambda: sizes.append(len(conn.info.pop("test_transaction")))
            )
        conn.info["test_transaction"].append(job.id)

    def budget(waiting: int) -> float:
        budgets_asked.append(waiting)
        return 1e-9

    registry = Registry()
    registry.register("record", record)
    count = 4 * worker.LEAST_CHUNK
    await enqueue(database, *(NewJob(kind="record", payload={}) for _ in range(count)), now=utcnow)
    batching = make_worker(database, registry, utcnow, batch_size=count, batch_seconds=budget)
    async with running(batching):
        await wait_until(lambda: _all_done(database, count))
    assert sizes == [worker.LEAST_CHUNK] * 4
    # Asked after each transaction, with the jobs of the claim still to run.
    assert budgets_asked == [3 * worker.LEAST_CHUNK, 2 * worker.LEAST_CHUNK, worker.LEAST_CHUNK, 0]


def _batched_recorder(events: list[tuple[str, int]], *, failing_call: int = 0) -> Registry:
    """A batched kind whose preparations and commits are noted in `events` as ("prepared",
    jobs) and ("committed", jobs); its `failing_call`-th preparation fails (1: the first)."""
    calls = 0

    async def prepare(jobs: Sequence[Job]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == failing_call:
            raise RuntimeError("this preparation fails")
        events.append(("prepared", len(jobs)))
        return [job.id for job in jobs]

    async def handle(conn: AsyncConnection, jobs: Sequence[Job], prepared: list[int]) -> None:
        assert prepared == [job.id for job in jobs]  # each transaction gets its own jobs'
        db_engine.after_commit(conn, lambda: events.append(("committed", len(jobs))))

    registry = Registry()
    registry.register_batched("batched", handle, prepare=prepare)
    return registry


async def test_a_batch_prepares_its_next_transaction_while_this_one_commits(
    database: Database,
) -> None:
    """Two transactions of LEAST_CHUNK jobs: the second's preparation (a read) starts before
    the first's COMMIT has come back, not after it."""
    events: list[tuple[str, int]] = []
    count, chunk = 2 * worker.LEAST_CHUNK, worker.LEAST_CHUNK
    await enqueue(database, *(NewJob(kind="batched", payload={}) for _ in range(count)), now=utcnow)
    registry = _batched_recorder(events)
    batching = make_worker(database, registry, utcnow, batch_size=count, batch_seconds=1e-9)
    async with running(batching):
        await wait_until(lambda: _all_done(database, count))
    prepared, committed = ("prepared", chunk), ("committed", chunk)
    assert events == [prepared, prepared, committed, committed]


async def test_a_preparation_that_fails_ahead_leaves_its_jobs_to_run_one_by_one(
    database: Database,
) -> None:
    """The second transaction's preparation, started ahead, fails: the first transaction
    stands, and the second's jobs run alone, each prepared alone, each done once."""
    events: list[tuple[str, int]] = []
    count, chunk = 2 * worker.LEAST_CHUNK, worker.LEAST_CHUNK
    await enqueue(database, *(NewJob(kind="batched", payload={}) for _ in range(count)), now=utcnow)
    registry = _batched_recorder(events, failing_call=2)
    batching = make_worker(database, registry, utcnow, batch_size=count, batch_seconds=1e-9)
    async with running(batching):
        await wait_until(lambda: _all_done(database, count))
    alone = [("prepared", 1), ("committed", 1)]
    assert events == [("prepared", chunk), ("committed", chunk)] + alone * chunk


async def _all_done(database: Database, count: int) -> bool:
    async with database.engine.connect() as conn:
        return (await store.count_by_state(conn)).get(JobState.DONE, 0) == count


async def test_a_batch_claims_the_next_in_the_transaction_completing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: the first job enqueues three more of its queue: they run as the next batch,
    claimed in the transaction that completed the first (the worker's own claims: one), each
    batch committed alone. That claim finds nothing after them, so the worker looks (a read)
    before it claims again. (PostgreSQL's batches claim alone: Worker._claim_next_batch.)"""
    database = await sqlite_with_schema(tmp_path / "queue.db")
    calls: list[str] = []
    sizes: list[int] = []

    async def record(conn: AsyncConnection, job: Job) -> None:
        calls.append("ran")
        if "test_transaction" not in conn.info:
            conn.info["test_transaction"] = []
            db_engine.after_commit(
                conn, lambda: sizes.append(len(conn.info.pop("test_transaction")))
            )
        conn.info["test_transaction"].append(job.id)
        if job.payload["spawn"]:
            spawned = [NewJob(kind="record", payload={"spawn": False}) for _ in range(3)]
            await store.enqueue(conn, spawned, now=utcnow(), default_max_attempts=3)

    def counted(name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counting(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await call(*args, **kwargs)

        return counting

    monkeypatch.setattr(store, "claim", counted("claim", store.claim))
    monkeypatch.setattr(store, "next_run_at", counted("look", store.next_run_at))
    registry = Registry()
    registry.register("record", record)
    await enqueue(database, NewJob(kind="record", payload={"spawn": True}), now=utcnow)

    async def looked_after_the_last_run() -> bool:
        return calls.count("ran") == 4 and calls[-1] == "look"

    try:
        async with running(make_worker(database, registry, utcnow, batch_size=10)):
            await wait_until(lambda: _all_done(database, 4))
            await wait_until(looked_after_the_last_run)
    finally:
        await database.dispose()
    assert sizes[:2] == [1, 3]
    assert calls.count("claim") == 1
    after_runs = calls[len(calls) - calls[::-1].index("ran") :]
    assert after_runs[0] == "look"


async def test_a_failure_in_a_batch_undoes_it_and_the_rest_runs_one_by_one(
    database: Database, clock: Clock
) -> None:
    """a2 fails inside a shared transaction: its batch's writes are undone, then each job runs
    alone: a1, b1, b2 once each in effect, a2 waits for its retry and a3 behind it."""
    calls: list[str] = []

    async def record(conn: AsyncConnection, job: Job) -> None:
        name = job.payload["name"]
        calls.append(name)
        if name == "a2":
            raise RuntimeError("a2 failed")
        await add_workspace(conn, name)

    registry = Registry()
    registry.register("record", record)
    names = [("a1", "a"), ("b1", "b"), ("a2", "a"), ("b2", "b"), ("a3", "a")]
    job_ids = await enqueue(
        database,
        *(NewJob(kind="record", payload={"name": n}, ordering_key=k) for n, k in names),
        now=clock,
    )
    ids = dict(zip([n for n, _ in names], job_ids, strict=True))
    async with running(make_worker(database, registry, clock, batch_size=10)):
        await wait_until(in_state(database, ids["b2"], JobState.DONE))
        await wait_until(in_state(database, ids["a1"], JobState.DONE))
    assert sorted(await workspace_names(database)) == ["a1", "b1", "b2"]
    assert calls.count("a1") == 2  # once in the undone batch, once alone
    a2, a3 = await get(database, ids["a2"]), await get(database, ids["a3"])
    assert (a2.state, a2.attempts, a2.last_error) == (
        JobState.PENDING,
        1,
        "RuntimeError: a2 failed",
    )
    assert (a3.state, a3.attempts) == (JobState.PENDING, 0)  # held back, its attempt given back
    assert calls.count("a3") == 0


async def test_jobs_held_back_while_the_database_is_away_are_left_to_their_lease(
    database: Database,
    clock: Clock,
    logs: list[MutableMapping[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Handing held-back jobs back fails (PostgreSQL restarting, say): the batch ends with a
    warning, not a crash, and the jobs stay the worker's until their lease lapses."""

    async def record(conn: AsyncConnection, job: Job) -> None:
        if job.payload["name"] == "a1":
            raise RuntimeError("a1 failed")

    async def away(*args: object, **kwargs: object) -> int:
        raise OperationalError("UPDATE jobs", {}, Exception("the database is shutting down"))

    monkeypatch.setattr(store, "release", away)
    registry = Registry()
    registry.register("record", record)
    a1, a2 = await enqueue(
        database,
        *(NewJob(kind="record", payload={"name": n}, ordering_key="a") for n in ("a1", "a2")),
        now=clock,
    )
    async with running(make_worker(database, registry, clock, batch_size=10)):

        async def warned() -> bool:
            return any(entry["event"] == "jobs.release_failed" for entry in logs)

        await wait_until(warned)
    assert not [entry for entry in logs if entry["event"] == "job.crashed"]
    assert (await get(database, a1)).state == JobState.PENDING  # its retry
    assert (await get(database, a2)).state == JobState.RUNNING  # the lease will free it


async def test_a_job_waits_for_its_predecessors_retry_and_a_dead_one_lets_it_go(
    database: Database, clock: Clock
) -> None:
    """A key's next job never overtakes a failed one waiting for its retry; once that one is
    dead, the next runs."""
    seen: list[JobState] = []  # the first job's state whenever the second runs

    async def record(job: Job) -> None:
        if job.payload["name"] == "first":
            raise RuntimeError("no")
        seen.append((await get(database, first_id)).state)

    registry = Registry()
    registry.register("record", record, transactional=False)
    first_id, second_id = await enqueue(
        database,
        NewJob(kind="record", payload={"name": "first"}, ordering_key="k"),
        NewJob(kind="record", payload={"name": "second"}, ordering_key="k"),
        now=clock,
        max_attempts=2,
    )
    worker = make_worker(database, registry, clock)
    async with running(worker):

        async def failed_once() -> bool:
            return (await get(database, first_id)).attempts == 1 and (
                await get(database, first_id)
            ).state is JobState.PENDING

        await wait_until(failed_once)
        clock.advance(1)  # the retry is due
        worker.notify()
        await wait_until(in_state(database, first_id, JobState.DEAD))
        worker.notify()
        await wait_until(in_state(database, second_id, JobState.DONE))
    assert seen == [JobState.DEAD]


@pytest.mark.parametrize(
    ("ran", "elapsed", "least", "expected"),
    [
        (16, 0.005, 1, 16),  # on target: unchanged
        (1, 0.0005, 1, 3),  # ten times too fast: grows, by the geometric mean
        (100, 0.02, 1, 50),  # four times too slow: halves
        (500, 0.0001, 1, 500),  # never above `most`
        (1, 1.0, 1, 1),  # never below one
        (16, 1.0, 8, 8),  # never below `least`, however slow
        (1, 0.0005, 8, 8),
    ],
)
def test_next_chunk_size_moves_halfway_towards_the_target(
    ran: int, elapsed: float, least: int, expected: int
) -> None:
    assert worker.next_chunk_size(ran, elapsed, target=0.005, least=least, most=500) == expected


async def test_a_timer_fires_once_across_two_workers_that_nobody_wakes(
    database: Database,
) -> None:
    """Two workers (as two processes would) that look only hourly: the job enqueued for a
    moment ahead still runs, once, woken by its own due time."""
    runs: list[str] = []

    async def record(job: Job) -> None:
        runs.append(job.locked_by or "")

    registry = Registry()
    registry.register("timer", record, transactional=False)
    hourly = pacing.Pacing.steady(3600)
    workers = [
        make_worker(
            database,
            registry,
            utcnow,
            worker_id=f"w{n}",
            pacing=hourly,
            rescue_interval=3600,  # no maintenance look either
            lease_seconds=3600,
        )
        for n in (1, 2)
    ]
    due = utcnow() + timedelta(seconds=0.5)
    [job_id] = await enqueue(database, NewJob(kind="timer", payload={}, run_at=due), now=utcnow)
    async with running(*workers):
        # Each looks once at start, finds the timer not due yet, and is never notified:
        # only the timer's due time can wake them before the hour is up.
        await wait_until(in_state(database, job_id, JobState.DONE))
    assert len(runs) == 1
    assert runs[0] in {"w1", "w2"}


class TimerTime:
    """Time that moves only by the worker's own pauses, up to a horizon: a pause that would
    reach it waits for a wake instead (the test's stop), so far-future timers never fire."""

    def __init__(self, clock: Clock, *, horizon: datetime) -> None:
        self.clock = clock
        self.start = clock()
        self.horizon = horizon

    def monotonic(self) -> float:
        return (self.clock() - self.start).total_seconds()

    async def wait(self, wake: asyncio.Event, seconds: float) -> bool:
        if wake.is_set():
            return True
        if self.clock() + timedelta(seconds=seconds) >= self.horizon:
            await wake.wait()
            return True
        self.clock.advance(seconds)
        await asyncio.sleep(0)  # let the test run, as a real pause would
        return False


async def test_timers_fire_on_time_among_100k_future_ones(database: Database) -> None:
    """100,000 timers a day ahead, five within the next minute, a worker nobody wakes that
    would otherwise look hourly: each of the five runs at its due time (within 1 s of it),
    none of the 100,000 runs, and no claim had to wade through them (bench/claims.py's
    `future` figures show the cost; here, the worker simply sleeps until each is due)."""
    clock = Clock(start=datetime(2026, 6, 1, 12, 0, tzinfo=UTC))
    far = clock() + timedelta(days=1)
    await enqueue(
        database,
        *(
            NewJob(kind="timer", payload={}, run_at=far + timedelta(seconds=n))
            for n in range(100_000)
        ),
        now=clock,
    )
    near = [clock() + timedelta(seconds=s) for s in (7, 19, 20.5, 33, 58)]
    near_ids = await enqueue(
        database, *(NewJob(kind="timer", payload={}, run_at=due) for due in near), now=clock
    )
    fired: list[tuple[datetime, datetime]] = []

    async def record(job: Job) -> None:
        fired.append((job.run_at, clock()))

    registry = Registry()
    registry.register("timer", record, transactional=False)
    time = TimerTime(clock, horizon=far)
    hourly_worker = make_worker(
        database,
        registry,
        clock,
        pacing=pacing.Pacing.steady(3600),
        rescue_interval=3600,
        lease_seconds=3600,
        monotonic=time.monotonic,
        wait=time.wait,
    )
    async with running(hourly_worker):
        for job_id in near_ids:
            await wait_until(in_state(database, job_id, JobState.DONE))
    assert [due for due, _ in fired] == near
    late = [(ran - due).total_seconds() for due, ran in fired]
    assert all(0 <= seconds <= 1 for seconds in late), late
    async with database.engine.connect() as conn:
        assert (await store.count_by_state(conn))[JobState.PENDING] == 100_000
