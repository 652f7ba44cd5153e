"""Contract tests for `tgrelay.queue.store`, run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tgrelay.db.engine import Database
from tgrelay.queue import retry, store
from tgrelay.queue.models import Job, JobState, NewJob
from tgrelay.testing.clock import Clock

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

LEASE = 30.0
POLICY = retry.RetryPolicy(base_delay=10, jitter=0)


@pytest.fixture
def clock() -> Clock:
    """A clock that stands at START until a test moves it."""
    return Clock(start=START)


async def enqueue(db: Database, *jobs: NewJob, now: Clock) -> list[int]:
    async with db.transaction() as conn:
        return await store.enqueue(conn, jobs, now=now(), default_max_attempts=3)


async def claim(db: Database, clock: Clock, worker: str = "w1", limit: int = 10) -> list[Job]:
    return await store.claim(db, worker_id=worker, limit=limit, now=clock(), lease_seconds=LEASE)


async def get(db: Database, job_id: int) -> Job:
    async with db.transaction() as conn:
        job = await store.get(conn, job_id)
    assert job is not None
    return job


async def complete(db: Database, job: Job, clock: Clock, worker: str = "w1") -> bool:
    async with db.transaction() as conn:
        return await store.complete(conn, job.id, worker_id=worker, now=clock())


def ids(jobs: Sequence[Job]) -> list[int]:
    return [job.id for job in jobs]


def job(key: str | None = None, kind: str = "k", **fields: object) -> NewJob:
    return NewJob(kind=kind, payload=fields, ordering_key=key)


async def test_enqueue_stores_jobs_with_defaults_and_returns_ids_in_order(
    database: Database, clock: Clock
) -> None:
    """Enqueued jobs come back exactly as asked, with now and the default max_attempts filled in."""
    later = START + timedelta(hours=1)
    new_jobs = [
        NewJob(kind="send", payload={"text": "hi", "n": [1, 2]}, ordering_key="chat:1"),
        NewJob(kind="deliver", payload={}, subject_id=42, run_at=later, max_attempts=7),
    ]
    job_ids = await enqueue(database, *new_jobs, now=clock)
    assert [await get(database, job_id) for job_id in job_ids] == [
        Job(
            id=job_ids[0],
            kind="send",
            queue="default",
            payload={"text": "hi", "n": [1, 2]},
            ordering_key="chat:1",
            after_id=None,
            subject_id=None,
            state=JobState.PENDING,
            attempts=0,
            max_attempts=3,
            run_at=START,
            locked_by=None,
            lease_expires_at=None,
            last_error=None,
            created_at=START,
            finished_at=None,
        ),
        Job(
            id=job_ids[1],
            kind="deliver",
            queue="default",
            payload={},
            ordering_key=None,
            after_id=None,
            subject_id=42,
            state=JobState.PENDING,
            attempts=0,
            max_attempts=7,
            run_at=later,
            locked_by=None,
            lease_expires_at=None,
            last_error=None,
            created_at=START,
            finished_at=None,
        ),
    ]


async def test_enqueue_inserts_a_large_batch_in_input_order(
    database: Database, clock: Clock
) -> None:
    """A batch of 500 jobs gets 500 ascending ids that match its rows one to one."""
    job_ids = await enqueue(database, *(job(seq=n) for n in range(500)), now=clock)
    async with database.transaction() as conn:
        stored = await store.list_jobs(conn, state=None, limit=1000)
    assert job_ids == sorted(job_ids)
    assert [(j.id, j.payload) for j in stored] == [(i, {"seq": n}) for n, i in enumerate(job_ids)]


async def test_enqueue_commits_or_rolls_back_with_the_callers_transaction(
    database: Database, clock: Clock
) -> None:
    """Jobs enqueued in a transaction that fails are gone with it."""

    async def intake() -> None:
        async with database.transaction() as conn:
            await store.enqueue(conn, [job()], now=clock(), default_max_attempts=3)
            raise RuntimeError("intake failed")

    with pytest.raises(RuntimeError, match="intake failed"):
        await intake()
    async with database.transaction() as conn:
        assert await store.list_jobs(conn, state=None) == []


async def test_enqueue_of_nothing_inserts_nothing(database: Database, clock: Clock) -> None:
    """An empty batch returns no ids."""
    assert await enqueue(database, now=clock) == []


def test_new_job_refuses_values_the_table_cannot_hold() -> None:
    """Kinds, ordering keys and max_attempts outside the table's limits fail on both backends."""
    with pytest.raises(ValueError, match="kind"):
        NewJob(kind="x" * 65, payload={})
    with pytest.raises(ValueError, match="ordering_key"):
        NewJob(kind="k", payload={}, ordering_key="")
    with pytest.raises(ValueError, match="max_attempts"):
        NewJob(kind="k", payload={}, max_attempts=0)


async def test_claim_complete_round_trip(database: Database, clock: Clock) -> None:
    """A claimed job runs under the worker's lease and is done after complete()."""
    [job_id] = await enqueue(database, job("chat:1"), now=clock)
    pending = await get(database, job_id)
    [claimed] = await claim(database, clock)
    assert claimed == replace(
        pending,
        state=JobState.RUNNING,
        attempts=1,
        locked_by="w1",
        lease_expires_at=START + timedelta(seconds=LEASE),
    )
    clock.advance(2)
    assert await complete(database, claimed, clock) is True
    assert await get(database, job_id) == replace(
        pending,
        state=JobState.DONE,
        attempts=1,
        locked_by="w1",
        finished_at=START + timedelta(seconds=2),
    )
    assert await claim(database, clock) == []


async def test_claim_takes_due_jobs_earliest_due_first_up_to_the_limit(
    database: Database, clock: Clock
) -> None:
    """Jobs not yet due stay pending; due ones go by run_at, then id, `limit` at a time."""

    def due_in(seconds: float) -> NewJob:
        return NewJob(kind="k", payload={}, run_at=START + timedelta(seconds=seconds))

    job_ids = await enqueue(database, job(), due_in(60), job(), job(), due_in(30), now=clock)
    assert ids(await claim(database, clock, limit=2)) == [job_ids[0], job_ids[2]]
    assert ids(await claim(database, clock, limit=2)) == [job_ids[3]]
    clock.advance(60)
    assert ids(await claim(database, clock, limit=1)) == [job_ids[4]]
    assert ids(await claim(database, clock, limit=1)) == [job_ids[1]]


async def test_claim_hands_out_one_job_per_ordering_key_in_id_order(
    database: Database, clock: Clock
) -> None:
    """Only the oldest unfinished job of a key is claimable, and only while none of its key runs."""
    a1, b1, a2, n1, a3, n2 = await enqueue(
        database, job("a"), job("b"), job("a"), job(None), job("a"), job(None), now=clock
    )
    first = await claim(database, clock, "w1")
    assert ids(first) == [a1, b1, n1, n2]
    assert await claim(database, clock, "w2") == []
    assert await complete(database, first[0], clock) is True
    [second] = await claim(database, clock, "w2")
    assert second.id == a2
    assert await complete(database, second, clock, "w2") is True
    assert ids(await claim(database, clock, "w1")) == [a3]


async def test_failed_job_retries_after_its_delay_and_blocks_its_key_meanwhile(
    database: Database, clock: Clock
) -> None:
    """A failure puts the job back with a backoff; its key's later jobs wait for it."""
    first_id, second_id = await enqueue(database, job("chat"), job("chat"), now=clock)
    [first] = await claim(database, clock)
    async with database.transaction() as conn:
        state = await store.fail(
            conn, first, worker_id="w1", error="boom", now=clock(), policy=POLICY, rand=0.5
        )
    assert state is JobState.PENDING
    assert await get(database, first_id) == replace(
        first,
        state=JobState.PENDING,
        run_at=START + timedelta(seconds=10),
        locked_by=None,
        lease_expires_at=None,
        last_error="boom",
    )
    clock.advance(9)
    assert await claim(database, clock) == []
    clock.advance(1)
    [retried] = await claim(database, clock)
    assert (retried.id, retried.attempts) == (first_id, 2)
    assert await complete(database, retried, clock) is True
    assert ids(await claim(database, clock)) == [second_id]


async def test_exhausted_job_is_dead_listed_and_rerun_revives_it(
    database: Database, clock: Clock
) -> None:
    """The last failed attempt buries the job; rerun gives it fresh attempts, due now."""
    async with database.transaction() as conn:
        [job_id] = await store.enqueue(conn, [job("chat")], now=clock(), default_max_attempts=1)
    [claimed] = await claim(database, clock)
    async with database.transaction() as conn:
        state = await store.fail(
            conn, claimed, worker_id="w1", error="x" * 5000, now=clock(), policy=POLICY, rand=0.5
        )
    assert state is JobState.DEAD
    dead = await get(database, job_id)
    assert dead == replace(
        claimed,
        state=JobState.DEAD,
        lease_expires_at=None,
        last_error="x" * (store.MAX_ERROR_LENGTH - 1) + "…",
        finished_at=START,
    )
    async with database.transaction() as conn:
        assert await store.list_jobs(conn, state=JobState.DEAD) == [dead]
        assert await store.rerun(conn, job_id, now=clock.advance(5)) is True
        assert await store.rerun(conn, job_id, now=clock()) is False
    assert await get(database, job_id) == replace(
        dead, state=JobState.PENDING, attempts=0, run_at=clock(), finished_at=None, locked_by=None
    )
    assert ids(await claim(database, clock)) == [job_id]


async def test_mark_dead_buries_a_job_whatever_attempts_remain(
    database: Database, clock: Clock
) -> None:
    """A permanent failure makes the job dead on its first attempt, and frees its key."""
    first_id, second_id = await enqueue(database, job("chat"), job("chat"), now=clock)
    [claimed] = await claim(database, clock)
    async with database.transaction() as conn:
        assert await store.mark_dead(conn, claimed, worker_id="w1", error="bad", now=clock())
    dead = await get(database, first_id)
    assert (dead.state, dead.attempts, dead.last_error) == (JobState.DEAD, 1, "bad")
    assert ids(await claim(database, clock)) == [second_id]


async def test_rerun_job_waits_while_a_newer_job_of_its_key_runs(
    database: Database, clock: Clock
) -> None:
    """A revived dead job is older than the running job of its key, yet does not run beside it."""
    async with database.transaction() as conn:
        old_id, new_id = await store.enqueue(
            conn, [job("chat"), job("chat")], now=clock(), default_max_attempts=1
        )
    [old] = await claim(database, clock)
    async with database.transaction() as conn:
        await store.mark_dead(conn, old, worker_id="w1", error="bad", now=clock())
    [new] = await claim(database, clock)
    assert new.id == new_id
    async with database.transaction() as conn:
        assert await store.rerun(conn, old_id, now=clock()) is True
    assert await claim(database, clock, "w2") == []
    assert await complete(database, new, clock) is True
    assert ids(await claim(database, clock, "w2")) == [old_id]


async def test_claims_pass_over_future_and_finished_jobs(database: Database, clock: Clock) -> None:
    """A key's job behind a future-dated one waits (out of the ready index); finished jobs and
    timers cost nothing and are never handed out early."""
    later = START + timedelta(hours=1)
    timer_id, behind_id, free_id = await enqueue(
        database,
        NewJob(kind="k", payload={}, ordering_key="chat:1", run_at=later),
        job("chat:1"),
        job("chat:2"),
        now=clock,
    )
    [done] = await claim(database, clock, limit=1)  # chat:1's behind job is blocked meanwhile
    assert done.id == free_id
    assert await complete(database, done, clock) is True
    assert await blocked(database, behind_id) is True
    assert await claim(database, clock) == []
    clock.advance(3600)
    [timer] = await claim(database, clock)
    assert timer.id == timer_id
    assert await complete(database, timer, clock) is True
    assert await blocked(database, behind_id) is False  # freed with its predecessor's end
    assert ids(await claim(database, clock)) == [behind_id]


async def blocked(database: Database, job_id: int) -> bool:
    async with database.engine.connect() as conn:
        query = text("SELECT blocked FROM jobs WHERE id = :id")
        return bool((await conn.execute(query, {"id": job_id})).scalar_one())


async def test_a_dead_job_frees_the_next_of_its_key(database: Database, clock: Clock) -> None:
    _, second_id = await enqueue(database, job("chat"), job("chat"), now=clock)
    [first] = await claim(database, clock)
    assert await claim(database, clock) == []
    assert await blocked(database, second_id) is True
    async with database.transaction() as conn:
        assert await store.mark_dead(conn, first, worker_id="w1", error="bad", now=clock())
    assert ids(await claim(database, clock)) == [second_id]


async def test_a_claim_takes_a_keys_run_behind_its_head(database: Database, clock: Clock) -> None:
    """With runs, a chat's queued jobs come with its head, in order, up to max_jobs."""
    job_ids = await enqueue(database, *(job("chat") for _ in range(5)), job("other"), now=clock)
    claimed = await store.claim(
        database,
        worker_id="w1",
        limit=10,
        now=clock(),
        lease_seconds=LEASE,
        runs=store.Runs(kinds=frozenset({"k"}), max_jobs=3),
    )
    assert ids(claimed) == [job_ids[0], *job_ids[1:4], job_ids[5]]
    assert {job.state for job in claimed} == {JobState.RUNNING}


async def test_expired_lease_is_rescued_and_the_stale_worker_cannot_complete(
    database: Database, clock: Clock
) -> None:
    """After its lease expires a job returns to pending, attempt counted, for another worker."""
    [job_id] = await enqueue(database, job("chat"), now=clock)
    [stale] = await claim(database, clock, "w1")
    clock.advance(LEASE)
    assert await store.rescue_expired(database, now=clock()) == 0
    clock.advance(1)
    assert await store.rescue_expired(database, now=clock()) == 1
    assert await get(database, job_id) == replace(
        stale,
        state=JobState.PENDING,
        locked_by=None,
        lease_expires_at=None,
        last_error=store.LEASE_EXPIRED,
    )
    [fresh] = await claim(database, clock, "w2")
    assert (fresh.id, fresh.attempts, fresh.locked_by) == (job_id, 2, "w2")
    assert await complete(database, stale, clock, "w1") is False
    assert await get(database, job_id) == fresh
    assert await complete(database, fresh, clock, "w2") is True


async def test_expired_lease_on_the_last_attempt_buries_the_job(
    database: Database, clock: Clock
) -> None:
    """A job whose worker vanished on its last attempt is dead with "lease expired"."""
    async with database.transaction() as conn:
        [job_id] = await store.enqueue(conn, [job()], now=clock(), default_max_attempts=1)
    [claimed] = await claim(database, clock)
    clock.advance(LEASE + 1)
    assert await store.rescue_expired(database, now=clock()) == 1
    assert await get(database, job_id) == replace(
        claimed,
        state=JobState.DEAD,
        lease_expires_at=None,
        last_error=store.LEASE_EXPIRED,
        finished_at=clock(),
    )


async def test_extend_leases_keeps_a_live_workers_jobs_from_rescue(
    database: Database, clock: Clock
) -> None:
    """Renewed leases run from the renewal; other workers' jobs are untouched."""
    await enqueue(database, job(), job(), now=clock)
    [mine] = await claim(database, clock, "w1", limit=1)
    [theirs] = await claim(database, clock, "w2", limit=1)
    clock.advance(LEASE - 1)
    renewed = await store.extend_leases(
        database, [mine.id, theirs.id], worker_id="w1", now=clock(), lease_seconds=LEASE
    )
    assert renewed == 1
    clock.advance(2)
    assert await store.rescue_expired(database, now=clock()) == 1
    assert [
        (j.id, j.state) for j in [await get(database, mine.id), await get(database, theirs.id)]
    ] == [
        (mine.id, JobState.RUNNING),
        (theirs.id, JobState.PENDING),
    ]


async def test_reschedule_gives_the_attempt_back(database: Database, clock: Clock) -> None:
    """A rescheduled job is pending at the new time with the attempt not counted."""
    [job_id] = await enqueue(database, job("chat"), now=clock)
    [claimed] = await claim(database, clock)
    later = START + timedelta(seconds=30)
    async with database.transaction() as conn:
        assert await store.reschedule(
            conn, claimed, worker_id="w1", run_at=later, reason="429: retry after 30"
        )
    assert await get(database, job_id) == replace(
        claimed,
        state=JobState.PENDING,
        attempts=0,
        run_at=later,
        locked_by=None,
        lease_expires_at=None,
        last_error="429: retry after 30",
    )


async def test_reschedule_can_carry_a_new_payload(database: Database, clock: Clock) -> None:
    """A rescheduled job may hand its next run a new payload (e.g. a reserved send slot)."""
    [job_id] = await enqueue(database, job("chat"), now=clock)
    [claimed] = await claim(database, clock)
    async with database.transaction() as conn:
        assert await store.reschedule(
            conn,
            claimed,
            worker_id="w1",
            run_at=clock(),
            reason="slot reserved",
            payload={**claimed.payload, "slot_at": 1.5},
        )
    assert (await get(database, job_id)).payload == {**claimed.payload, "slot_at": 1.5}


async def test_stale_worker_cannot_fail_or_reschedule_a_job_it_lost(
    database: Database, clock: Clock
) -> None:
    """fail, mark_dead and reschedule by a worker that no longer holds the job change nothing."""
    [job_id] = await enqueue(database, job(), now=clock)
    [stale] = await claim(database, clock, "w1")
    clock.advance(LEASE + 1)
    await store.rescue_expired(database, now=clock())
    [fresh] = await claim(database, clock, "w2")
    async with database.transaction() as conn:
        assert (
            await store.fail(
                conn, stale, worker_id="w1", error="e", now=clock(), policy=POLICY, rand=0
            )
            is None
        )
        assert await store.mark_dead(conn, stale, worker_id="w1", error="e", now=clock()) is False
        assert (
            await store.reschedule(conn, stale, worker_id="w1", run_at=clock(), reason="r") is False
        )
    assert await get(database, job_id) == fresh


async def test_release_hands_back_only_this_workers_running_jobs(
    database: Database, clock: Clock
) -> None:
    """Released jobs are pending and claimable at once, with their attempt given back."""
    await enqueue(database, job(), job(), now=clock)
    [mine] = await claim(database, clock, "w1", limit=1)
    [theirs] = await claim(database, clock, "w2", limit=1)
    assert await store.release(database, [mine.id, theirs.id], worker_id="w1") == 1
    assert await store.release(database, [], worker_id="w1") == 0
    assert await get(database, mine.id) == replace(
        mine, state=JobState.PENDING, attempts=0, locked_by=None, lease_expires_at=None
    )
    assert await get(database, theirs.id) == theirs
    assert ids(await claim(database, clock, "w3")) == [mine.id]


async def test_list_jobs_filters_and_pages(database: Database, clock: Clock) -> None:
    """list_jobs filters by state, kinds and subjects, and pages with after_id."""
    job_ids = await enqueue(
        database,
        NewJob(kind="a", payload={}, subject_id=1),
        NewJob(kind="b", payload={}, subject_id=2),
        NewJob(kind="a", payload={}, subject_id=3),
        NewJob(kind="c", payload={}, subject_id=1),
        now=clock,
    )
    await claim(database, clock, limit=1)
    async with database.transaction() as conn:

        async def listed(**filters: object) -> list[int]:
            return ids(await store.list_jobs(conn, **filters))  # type: ignore[arg-type]

        assert await listed(state=None) == job_ids
        assert await listed(state=JobState.RUNNING) == job_ids[:1]
        assert await listed(state=JobState.PENDING, kinds=["a", "c"]) == [job_ids[2], job_ids[3]]
        assert await listed(state=None, subject_ids=[1]) == [job_ids[0], job_ids[3]]
        assert await listed(state=None, limit=2) == job_ids[:2]
        assert await listed(state=None, limit=2, after_id=job_ids[1]) == job_ids[2:]


async def test_count_by_state_reports_every_state(database: Database, clock: Clock) -> None:
    """Counts cover all four states, zeros included."""
    async with database.transaction() as conn:
        assert await store.count_by_state(conn) == dict.fromkeys(JobState, 0)
    await enqueue(database, job(), job(), job(), now=clock)
    [done, _] = await claim(database, clock, limit=2)
    await complete(database, done, clock)
    async with database.transaction() as conn:
        assert await store.count_by_state(conn) == {
            JobState.PENDING: 1,
            JobState.RUNNING: 1,
            JobState.DONE: 1,
            JobState.DEAD: 0,
        }


async def test_concurrent_claimers_never_share_a_key(database: Database, clock: Clock) -> None:
    """Six claimers racing over five keys never hold two jobs of one key, and keep id order."""
    keys = [f"chat:{n // 2 % 5}" for n in range(60)]
    await enqueue(database, *(job(key) for key in keys), now=clock)
    running: dict[str, list[int]] = {key: [] for key in keys}
    finished: list[tuple[str, int]] = []
    overlaps: list[list[int]] = []

    async def run_one(claimed: Job, worker: str) -> None:
        key = claimed.ordering_key
        assert key is not None
        running[key].append(claimed.id)
        if len(running[key]) > 1:
            overlaps.append(list(running[key]))
        await asyncio.sleep(0.001)  # give other claimers a chance to take the same key
        running[key].remove(claimed.id)  # before complete(): only then may the key be free
        finished.append((key, claimed.id))
        assert await complete(database, claimed, clock, worker)

    async def claimer(worker: str) -> None:
        while len(finished) < len(keys) and not overlaps:
            claimed = await claim(database, clock, worker, limit=3)
            await asyncio.gather(*(run_one(j, worker) for j in claimed))
            await asyncio.sleep(0 if claimed else 0.005)

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        for n in range(6):
            group.create_task(claimer(f"w{n}"))
    assert overlaps == []
    assert sorted(finished) == sorted(set(finished))
    for key in set(keys):
        order = [job_id for k, job_id in finished if k == key]
        assert (len(order), order) == (12, sorted(order))


@pytest.mark.postgres
async def test_freeing_a_successor_waits_for_the_claimer_blocking_it(
    postgres_database: Database, clock: Clock
) -> None:
    """A claimer that saw the predecessor running blocks its successor; the predecessor's end,
    committed meanwhile, still frees it: freeing waits for the claimer's row lock."""
    database = postgres_database
    _, second_id = await enqueue(database, job("chat:1"), job("chat:1"), now=clock)
    [first] = await claim(database, clock, limit=1)
    async with database.transaction() as claimer:
        # What a claim does with a candidate whose predecessor it saw running.
        await claimer.execute(
            text("SELECT id FROM jobs WHERE id = :id FOR UPDATE"), {"id": second_id}
        )
        await claimer.execute(text("UPDATE jobs SET blocked = 1 WHERE id = :id"), {"id": second_id})
        finishing = asyncio.create_task(complete(database, first, clock))
        await wait_until_waiting_for_a_lock(database)
    assert await finishing is True
    assert ids(await claim(database, clock)) == [second_id]


@pytest.mark.postgres
async def test_a_job_enqueued_while_its_predecessor_ends_is_not_left_blocked(
    postgres_database: Database, clock: Clock
) -> None:
    """A job linked to a predecessor whose end has freed its successors but not committed
    yet is not blocked by a claim that still sees the predecessor running (nothing would
    free it): the claim leaves alone a predecessor another transaction holds."""
    database = postgres_database
    await enqueue(database, job("chat:1"), now=clock)
    [first] = await claim(database, clock, limit=1)
    async with database.transaction() as ending:
        assert await store.complete(ending, first.id, worker_id="w1", now=clock())
        [second_id] = await enqueue(database, job("chat:1"), now=clock)
        assert await claim(database, clock, "w2") == []  # it still sees the first running
    assert ids(await claim(database, clock, "w2")) == [second_id]


async def wait_until_waiting_for_a_lock(database: Database) -> None:
    query = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    async with asyncio.timeout(10):
        while True:
            async with database.engine.connect() as conn:
                if (await conn.execute(query)).scalar_one() > 0:
                    return
            await asyncio.sleep(0.01)


@pytest.mark.postgres
async def test_jobs_of_one_key_enqueued_at_once_are_linked_in_commit_order(
    postgres_database: Database, clock: Clock
) -> None:
    """Ids from a sequence could commit out of order; a key's second enqueuer waits for the
    first to commit, so its job follows the first's whatever their ids."""
    database = postgres_database
    async with database.transaction() as slow_intake:
        [first_id] = await store.enqueue(
            slow_intake, [job("chat")], now=clock(), default_max_attempts=3
        )
        second = asyncio.create_task(enqueue(database, job("chat"), now=clock))
        await wait_until_waiting_for_a_lock(database)
    [second_id] = await second
    async with database.transaction() as conn:
        second_job = await store.get(conn, second_id)
    assert second_job is not None
    assert second_job.after_id == first_id
    [running] = await claim(database, clock, "w1")
    assert running.id == first_id
    assert await claim(database, clock, "w2") == []
    assert await complete(database, running, clock) is True
    assert ids(await claim(database, clock, "w2")) == [second_id]


async def test_next_run_at_is_the_earliest_ready_job_of_the_queue(
    database: Database, clock: Clock
) -> None:
    later = START + timedelta(minutes=1)
    await enqueue(
        database,
        NewJob(kind="deliver_event", queue="webhooks", payload={}, run_at=later),
        job(kind="update"),
        NewJob(kind="update", payload={}, run_at=START + timedelta(hours=1)),
        now=clock,
    )
    assert await store.next_run_at(database, queue="webhooks") == later
    assert await store.next_run_at(database) == START
    [running] = await store.claim(
        database, worker_id="w1", limit=1, now=clock(), lease_seconds=LEASE
    )
    assert running.kind == "update"
    # Running: no longer ready; the timer an hour ahead is next.
    assert await store.next_run_at(database) == START + timedelta(hours=1)
    assert await store.next_run_at(database, queue="nobody") is None
