"""The queue's SQL: one function per state change, shared by SQLite and PostgreSQL.

Functions taking a connection join the caller's transaction, so a job commits or vanishes
with the work that asked for it. Functions taking the `Database` open their own short one.
State changes of a running job check `locked_by`, so a worker whose lease was rescued
cannot overwrite what the job's next holder did. Done and dead jobs keep `locked_by` to
show which worker ran them last; pending ones have none.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Row, TextClause, bindparam, case, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Update
from sqlalchemy.sql.selectable import TextualSelect

from tgrelay import tracing
from tgrelay.db import ids, notifications, prepared, tables
from tgrelay.db.bulk_inserts import BulkInsert
from tgrelay.db.engine import Database
from tgrelay.queue import chains, links, retry
from tgrelay.queue.models import DEFAULT_QUEUE, Job, JobState, NewJob

jobs = tables.jobs
MAX_ERROR_LENGTH = 2000
LEASE_EXPIRED = "lease expired"


# The columns a new job's row sets; the rest take their defaults. `id` and `after_id` are
# set by whoever inserts the row (`enqueue`, the intake's SQLite writer), which link jobs
# to their predecessors before writing them (queue/links.py).
JOB_COLUMNS = (
    "id",
    "kind",
    "queue",
    "payload",
    "ordering_key",
    "after_id",
    "subject_id",
    "state",
    "attempts",
    "max_attempts",
    "run_at",
    "created_at",
    "trace_id",
)


def job_values(job: NewJob, *, now: datetime, default_max_attempts: int) -> dict[str, Any]:
    """The row of a new job (JOB_COLUMNS), id and after_id left to the writer."""
    return {
        "id": None,
        "kind": job.kind,
        "queue": job.queue,
        "payload": encode_payload(job.payload),
        "ordering_key": job.ordering_key,
        "after_id": None,
        "subject_id": job.subject_id,
        "state": JobState.PENDING.value,
        "attempts": 0,
        "max_attempts": job.max_attempts or default_max_attempts,
        "run_at": job.run_at or now,
        "created_at": now,
        # A job enqueued while a job runs joins the running job's trace (the worker binds it).
        "trace_id": job.trace_id or tracing.current_trace_id(),
    }


def encode_payload(payload: Mapping[str, Any]) -> str:
    """A job's payload as its column holds it."""
    return orjson.dumps(dict(payload)).decode()


async def enqueue(
    conn: AsyncConnection, new_jobs: Sequence[NewJob], *, now: datetime, default_max_attempts: int
) -> list[int]:
    """Insert jobs in the caller's transaction, each after its key's newest; ids in input order.

    The caller's transaction must be a writer's (SQLite: BEGIN IMMEDIATE): ids are taken
    before the INSERT so that each job can name its predecessor in the same write.
    """
    if not new_jobs:
        return []
    job_ids = await ids.new_ids(conn, jobs, len(new_jobs))
    keys = [job.ordering_key for job in new_jobs]
    after_ids, newest = links.link(job_ids, keys, await chains.newest_jobs(conn, keys))
    rows = []
    for job, job_id, after_id in zip(new_jobs, job_ids, after_ids, strict=True):
        row = job_values(job, now=now, default_max_attempts=default_max_attempts)
        row["id"], row["after_id"] = job_id, after_id
        rows.append(row)
    await _INSERT_JOBS(conn, rows)
    await chains.move_newest(conn, newest)
    # Workers of other processes wake at commit; jobs for later wait for a worker's timer.
    await notifications.announce(conn, due_queues(new_jobs, now=now))
    return job_ids


_INSERT_JOBS = BulkInsert(jobs, JOB_COLUMNS)


def due_queues(new_jobs: Sequence[NewJob], *, now: datetime) -> set[str]:
    """The queues of the jobs due at once (`run_at` unset or not after `now`)."""
    return {job.queue for job in new_jobs if job.run_at is None or job.run_at <= now}


@dataclass(frozen=True, kw_only=True)
class Runs:
    """Which claimed jobs bring their key's next jobs along, to run in the same order.

    A chat's updates queue behind each other; claimed one at a time they would cost a claim
    each. With runs, a claim takes a key's head and up to `max_jobs` (in all) of the jobs
    queued behind it, while those are due and of these kinds, for one worker to run in turn.
    """

    kinds: frozenset[str]
    max_jobs: int


NO_RUNS = Runs(kinds=frozenset(), max_jobs=0)


async def claim(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    now: datetime,
    lease_seconds: float,
    queue: str = DEFAULT_QUEUE,
    runs: Runs = NO_RUNS,
) -> list[Job]:
    """Move up to `limit` claimable jobs of `queue` (plus their runs) to running, in a
    transaction of their own: `start_claimable` does the moving."""
    if limit <= 0:
        return []
    async with db.transaction() as conn:
        claimed = await start_claimable(
            conn,
            worker_id=worker_id,
            limit=limit,
            now=now,
            lease_seconds=lease_seconds,
            queue=queue,
            runs=runs,
        )
    # Made into jobs once the write lock is given back (3 % of serve's time in a py-spy profile).
    return claimed.jobs()


@dataclass(frozen=True)
class Claimed:
    """Jobs a claim moved to running: their ids in claiming order, and each one's row as
    the move left it (RETURNING: no read of them afterwards)."""

    ids: list[int]
    rows: list[Row[Any]]

    def jobs(self) -> list[Job]:
        """The jobs, in the order they must run: each key's jobs follow each other."""
        by_id = {int(row.id): _to_job(row) for row in self.rows}
        return _in_running_order([by_id[job_id] for job_id in self.ids if job_id in by_id])


async def start_claimable(
    conn: AsyncConnection,
    *,
    worker_id: str,
    limit: int,
    now: datetime,
    lease_seconds: float,
    queue: str = DEFAULT_QUEUE,
    runs: Runs = NO_RUNS,
) -> Claimed:
    """Within the caller's transaction, move up to `limit` claimable jobs of `queue` (plus
    their runs) to running.

    Claimable: pending, due, and not waiting for its predecessor in its ordering key. Due
    jobs go oldest due first (run_at, then id), along ix_jobs_ready. Undone with the
    transaction: a batching worker claims its next batch in the transaction that completes
    the previous one (queue/worker.py).
    """
    if limit <= 0:
        return Claimed([], [])
    postgres = conn.dialect.name == "postgresql"
    params = {"queue": queue, "now": now}
    heads: list[int] = []
    rows: list[Row[Any]] = []
    for _ in range(MAX_CLAIM_ROUNDS):
        window = limit - len(heads)
        found, waiting = _sort_candidates(
            await _CANDIDATES[postgres](conn, params | {"window": window})
        )
        if waiting:
            await _BLOCK[postgres](conn, {"ids": waiting})
        if found:
            rows += await _START(conn, _start_params(found, worker_id, now, lease_seconds))
            heads += found
        # Each round takes the waiting jobs out of the index: the next one looks further.
        if len(heads) >= limit or len(found) + len(waiting) < window:
            break
    if not heads or runs.max_jobs <= 0:
        return Claimed(heads, rows)
    followers = await _followers(conn, heads, runs, params)
    if followers:
        rows += await _START(conn, _start_params(followers, worker_id, now, lease_seconds))
    return Claimed(heads + followers, rows)


# Rounds of a claim that found only jobs waiting for their predecessor: each round blocks
# what it found, so the next reaches further; a few bound the write lock's hold.
MAX_CLAIM_ROUNDS = 4


def _predecessor_unfinished(job: str, *, lock: str = "") -> str:
    """SQL: the job (a table alias, never input) waits, its predecessor being pending or
    running. The key's equality guards against an id SQLite gave again after the job that
    had it was deleted. `lock` ends the predecessor's lookup (a locking clause).

    A scalar subquery, not EXISTS: PostgreSQL turns an EXISTS into a join, which it planned,
    from statistics taken before a burst, as a scan of every pending and running job; a
    scalar one stays a lookup of the predecessor by its id."""
    return (
        f"(SELECT p.state FROM jobs AS p WHERE p.id = {job}.after_id"  # noqa: S608
        f" AND p.ordering_key = {job}.ordering_key{lock}) IN ('pending', 'running')"
    )


_WAITS = f"c.after_id IS NOT NULL AND {_predecessor_unfinished('c')}"
_READY = f"c.queue = :queue AND c.{tables.JOBS_READY_WHERE.replace(' AND ', ' AND c.')}"
# Built from this module's constants only, never from input.
_CANDIDATES_SQL = (
    f"SELECT c.id, c.ordering_key, {_WAITS} AS waits FROM jobs AS c{{hint}}"  # noqa: S608
    f" WHERE {_READY} AND c.run_at <= :now ORDER BY c.run_at, c.id LIMIT :window{{lock}}"
)


@functools.cache
def candidates(postgres: bool) -> TextClause:
    # SQLite: INDEXED BY names the partial index, whose terms _READY repeats word for word
    # (SQLite uses a partial index only then): the planner otherwise walked
    # ix_jobs_state_run_at and sorted. PostgreSQL: rows another claimer holds are skipped.
    sql = _CANDIDATES_SQL.format(
        hint="" if postgres else " INDEXED BY ix_jobs_ready",
        lock=" FOR UPDATE OF c SKIP LOCKED" if postgres else "",
    )
    return text(sql).bindparams(bindparam("now", type_=jobs.c.run_at.type))


@functools.cache
def block(postgres: bool) -> TextClause:
    """Mark jobs blocked whose predecessor is still pending or running.

    The predecessor is checked again: on PostgreSQL this statement's snapshot may see it
    finished since the candidates were read (queue/chains.py). And a job whose predecessor
    another transaction holds is not blocked (SKIP LOCKED; a later claim looks again): that
    transaction may be ending it, with its successors freed by a statement that ran before
    this job was linked, so nothing would free the job once blocked (a cluster test left 88
    such jobs). FOR SHARE is the weakest lock that an UPDATE of the predecessor holds off;
    taken, it lasts until the claim commits, which an ending would wait for anyway, its
    freeing waiting for the claim's lock on the job.
    """
    lock = " FOR SHARE OF p SKIP LOCKED" if postgres else ""
    unfinished = _predecessor_unfinished("jobs", lock=lock)
    return text(
        f"UPDATE jobs SET blocked = 1 WHERE id IN :ids AND {unfinished}"  # noqa: S608
    ).bindparams(bindparam("ids", expanding=True))


def _sort_candidates(rows: Sequence[Row[Any]]) -> tuple[list[int], list[int]]:
    """The heads to claim (one per key) and the jobs waiting for their predecessor."""
    found: list[int] = []
    waiting: list[int] = []
    keys: set[str] = set()
    for row in rows:
        job_id, key, waits = row.id, row.ordering_key, row.waits
        if waits:
            waiting.append(int(job_id))
        elif key is None:
            found.append(int(job_id))
        elif key not in keys:  # two heads of one key: a rerun job; the second waits a turn
            keys.add(key)
            found.append(int(job_id))
    return found, waiting


async def _followers(
    conn: AsyncConnection, heads: Sequence[int], runs: Runs, params: Mapping[str, Any]
) -> list[int]:
    """The due jobs queued behind the heads, breadth first: each key's next, then the next."""
    statement = _FOLLOWERS[conn.dialect.name == "postgresql"]
    values = {
        **params,
        "heads": list(heads),
        "kinds": sorted(runs.kinds),
        "max_jobs": runs.max_jobs,
        "max_rows": len(heads) + runs.max_jobs,
    }
    return [int(job_id) for (job_id,) in await statement(conn, values)]


@functools.cache
def followers(postgres: bool) -> TextClause:
    # Bounded inside the recursion, so one chat's long backlog is not walked to its end:
    # SQLite stops adding rows at the recursive part's LIMIT; PostgreSQL, which allows none
    # there, stops at the depth (and, evaluating lazily, at the outer LIMIT).
    limit = "" if postgres else " LIMIT :max_rows"
    # Each step must find a job's successor by ix_jobs_after_id, whatever the statistics say.
    # SQLite's planner otherwise took ix_jobs_state_run_at, walking every pending job.
    # PostgreSQL's, with statistics from before a burst (autovacuum had not analyzed the
    # table yet), scanned every pending job at each step: 237 ms a claim with 10,000 of one
    # chat queued. OFFSET 0 keeps the step's other conditions out of its scan, leaving it the
    # successor's index alone (0.5 ms).
    successor = (
        "CROSS JOIN LATERAL (SELECT id, kind, queue, state, run_at FROM jobs"
        " WHERE jobs.after_id = run.id OFFSET 0) AS j"
        if postgres
        else "JOIN jobs AS j INDEXED BY ix_jobs_after_id ON j.after_id = run.id"
    )
    return text(
        "WITH RECURSIVE run(id, kind, depth) AS ("  # noqa: S608 (constants only)
        " SELECT id, kind, 0 FROM jobs WHERE id IN :heads"
        " UNION ALL"
        f" SELECT j.id, j.kind, run.depth + 1 FROM run {successor}"
        " WHERE run.kind IN :kinds AND j.kind = run.kind AND j.queue = :queue"
        f" AND j.state = 'pending' AND j.run_at <= :now AND run.depth < :max_jobs{limit}"
        ") SELECT id FROM run WHERE depth > 0 LIMIT :max_jobs"
    ).bindparams(
        bindparam("heads", expanding=True),
        bindparam("kinds", expanding=True),
        bindparam("now", type_=jobs.c.run_at.type),
    )


# The claim's statements for each backend (True: PostgreSQL), run through db/prepared.py:
# on SQLite, in place under the write lock, where a claim's SQLAlchemy work cost more than
# its statements.
_CANDIDATES = {postgres: prepared.Prepared(candidates(postgres)) for postgres in (False, True)}
_BLOCK = {postgres: prepared.Prepared(block(postgres)) for postgres in (False, True)}
_FOLLOWERS = {postgres: prepared.Prepared(followers(postgres)) for postgres in (False, True)}


def _start_params(
    job_ids: Sequence[int], worker_id: str, now: datetime, lease_seconds: float
) -> dict[str, Any]:
    return {
        "ids": list(job_ids),
        "claim_worker": worker_id,
        "claim_lease_expires_at": now + timedelta(seconds=lease_seconds),
    }


# Built once: hashing a fresh statement cost more than SQLite took to run it.
_START = prepared.Prepared(
    update(jobs)
    .where(jobs.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        state=JobState.RUNNING.value,
        attempts=jobs.c.attempts + 1,
        blocked=0,
        locked_by=bindparam("claim_worker"),
        lease_expires_at=bindparam("claim_lease_expires_at", type_=jobs.c.lease_expires_at.type),
    )
    .returning(*jobs.c)
)


def _in_running_order(claimed: list[Job]) -> list[Job]:
    """Each key's jobs together, in their order; keys (and unkeyed jobs) by their first job."""
    groups: dict[object, list[Job]] = {}
    for job in claimed:
        groups.setdefault(job.ordering_key if job.ordering_key is not None else job.id, []).append(
            job
        )
    return [job for group in groups.values() for job in group]


async def next_run_at(db: Database, *, queue: str = DEFAULT_QUEUE) -> datetime | None:
    """When the earliest ready job of `queue` is due (maybe already): a read, taking no lock.

    Before a claim, it says whether one would find anything; when idle, how long a worker
    may sleep before a timer (a job enqueued for later) is due. It ignores predecessors, so
    a due job may still wait for its key's running head; the claim then blocks it.
    """
    async with db.engine.connect() as conn:
        row = (await conn.execute(_next_run_at(db.is_postgres), {"queue": queue})).first()
    return None if row is None else cast(datetime, row.run_at)


@functools.cache
def _next_run_at(postgres: bool) -> TextualSelect:
    hint = "" if postgres else " INDEXED BY ix_jobs_ready"
    return text(
        f"SELECT c.run_at FROM jobs AS c{hint} WHERE {_READY} ORDER BY c.run_at LIMIT 1"  # noqa: S608
    ).columns(run_at=jobs.c.run_at.type)


async def has_unfinished(conn: AsyncConnection, *, queue: str) -> bool:
    """Whether any job of `queue` is pending (due or not) or running."""
    unfinished = jobs.c.state.in_([JobState.PENDING.value, JobState.RUNNING.value])
    found = await conn.scalar(select(jobs.c.id).where(jobs.c.queue == queue, unfinished).limit(1))
    return found is not None


async def complete(conn: AsyncConnection, job_id: int, *, worker_id: str, now: datetime) -> bool:
    """Mark a job done; False when `worker_id` no longer holds it (its lease was rescued)."""
    return job_id in await complete_many(conn, [job_id], worker_id=worker_id, now=now)


async def complete_many(
    conn: AsyncConnection, job_ids: Sequence[int], *, worker_id: str, now: datetime
) -> set[int]:
    """Mark jobs done in one statement; the ids `worker_id` still held (the rest were rescued)."""
    if not job_ids:
        return set()
    params = {"held_ids": list(job_ids), "held_by": worker_id, "done_at": now}
    done = {int(row.id) for row in await _COMPLETE_MANY(conn, params)}
    await chains.free_successors(conn, sorted(done))
    return done


# Built once: each worker commit runs it, and hashing a fresh statement cost as much as running it.
_COMPLETE_MANY = prepared.Prepared(
    update(jobs)
    .where(
        jobs.c.id.in_(bindparam("held_ids", expanding=True)),
        jobs.c.state == JobState.RUNNING.value,
        jobs.c.locked_by == bindparam("held_by"),
    )
    .values(
        state=JobState.DONE.value,
        finished_at=bindparam("done_at", type_=jobs.c.finished_at.type),
        lease_expires_at=None,
    )
    .returning(jobs.c.id)
)


async def fail(
    conn: AsyncConnection,
    job: Job,
    *,
    worker_id: str,
    error: str,
    now: datetime,
    policy: retry.RetryPolicy,
    rand: float,
) -> JobState | None:
    """Record a failed attempt: pending again after the backoff, or dead when none remain.

    Returns the job's new state, or None when `worker_id` no longer holds the job.
    """
    run_at = retry.next_run_at(
        policy, attempts=job.attempts, max_attempts=job.max_attempts, now=now, rand=rand
    )
    if run_at is None:
        return (
            JobState.DEAD
            if await mark_dead(conn, job, worker_id=worker_id, error=error, now=now)
            else None
        )
    result = await conn.execute(
        _update_held_many([job.id], worker_id).values(
            state=JobState.PENDING.value,
            run_at=run_at,
            last_error=_truncate(error),
            locked_by=None,
            lease_expires_at=None,
        )
    )
    return JobState.PENDING if result.rowcount == 1 else None


async def mark_dead(
    conn: AsyncConnection, job: Job, *, worker_id: str, error: str, now: datetime
) -> bool:
    """Give up on a job at once (a permanent failure); False when `worker_id` lost it."""
    result = await conn.execute(
        _update_held_many([job.id], worker_id).values(
            state=JobState.DEAD.value,
            last_error=_truncate(error),
            finished_at=now,
            lease_expires_at=None,
        )
    )
    if result.rowcount != 1:
        return False
    await chains.free_successors(conn, [job.id])
    return True


async def reschedule(
    conn: AsyncConnection,
    job: Job,
    *,
    worker_id: str,
    run_at: datetime,
    reason: str,
    payload: Mapping[str, Any] | None = None,
) -> bool:
    """Put a job back to pending at `run_at` and give its attempt back: waiting is no failure.

    `payload`, when given, replaces the job's payload for its next run.
    """
    changes: dict[str, Any] = {
        "state": JobState.PENDING.value,
        "run_at": run_at,
        "attempts": jobs.c.attempts - 1,
        "last_error": _truncate(reason),
        "locked_by": None,
        "lease_expires_at": None,
    }
    if payload is not None:
        changes["payload"] = orjson.dumps(dict(payload)).decode()
    result = await conn.execute(_update_held_many([job.id], worker_id).values(changes))
    return result.rowcount == 1


async def note_payload(conn: AsyncConnection, job: Job, payload: Mapping[str, Any]) -> bool:
    """Replace a running job's payload (what its run records for the next one, e.g. a send
    recorded as attempted); False when its worker no longer holds it."""
    if job.locked_by is None:
        return False
    result = await conn.execute(
        _update_held_many([job.id], job.locked_by).values(
            payload=orjson.dumps(dict(payload)).decode()
        )
    )
    return result.rowcount == 1


async def release(db: Database, job_ids: Sequence[int], *, worker_id: str) -> int:
    """Hand running jobs back on shutdown, attempts given back; returns how many were held."""
    if not job_ids:
        return 0
    async with db.transaction() as conn:
        result = await conn.execute(
            _update_held_many(job_ids, worker_id)
            .values(
                state=JobState.PENDING.value,
                attempts=jobs.c.attempts - 1,
                locked_by=None,
                lease_expires_at=None,
            )
            .returning(jobs.c.queue)
        )
        released = [queue for (queue,) in result]
        # For a worker of another process: this one is stopping.
        await notifications.announce(conn, released)
        return len(released)


async def extend_leases(
    db: Database, job_ids: Sequence[int], *, worker_id: str, now: datetime, lease_seconds: float
) -> int:
    """Renew the leases of jobs a live worker still runs, so long handlers are not rescued."""
    if not job_ids:
        return 0
    async with db.transaction() as conn:
        result = await conn.execute(
            _update_held_many(job_ids, worker_id).values(
                lease_expires_at=now + timedelta(seconds=lease_seconds)
            )
        )
        return result.rowcount


async def rescue_expired(db: Database, *, now: datetime) -> int:
    """Return running jobs whose worker vanished to pending; dead if that was their last try.

    The attempt stays counted: a job that kills its worker must not be retried forever.
    """
    exhausted = jobs.c.attempts >= jobs.c.max_attempts
    # SKIP LOCKED (ignored by SQLite) keeps two rescuers on PostgreSQL from deadlocking.
    running = jobs.c.state == JobState.RUNNING.value
    # SQLite's statistics only know how many values `state` takes, not that running jobs
    # are few: unlikely() keeps it on ix_jobs_state_run_at rather than scanning the table.
    expired = (
        select(jobs.c.id)
        .where(func.unlikely(running) if db.is_sqlite else running, jobs.c.lease_expires_at < now)
        .with_for_update(skip_locked=True)
    )
    async with db.transaction() as conn:
        result = await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(expired))
            .values(
                state=case((exhausted, JobState.DEAD.value), else_=JobState.PENDING.value),
                finished_at=case((exhausted, now), else_=None),
                last_error=LEASE_EXPIRED,
                locked_by=case((exhausted, jobs.c.locked_by), else_=None),
                lease_expires_at=None,
            )
            .returning(jobs.c.id, jobs.c.state, jobs.c.queue)
        )
        rescued = result.all()
        await chains.free_successors(
            conn, [row.id for row in rescued if row.state == JobState.DEAD.value]
        )
        await notifications.announce(
            conn, [row.queue for row in rescued if row.state == JobState.PENDING.value]
        )
        return len(rescued)


async def get(conn: AsyncConnection, job_id: int) -> Job | None:
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    return None if row is None else _to_job(row)


async def list_jobs(
    conn: AsyncConnection,
    *,
    state: JobState | None,
    kinds: Sequence[str] | None = None,
    subject_ids: Sequence[int] | None = None,
    limit: int = 100,
    after_id: int | None = None,
) -> list[Job]:
    """Jobs by id, filtered; pass the last id seen as `after_id` to page on."""
    statement = select(jobs).order_by(jobs.c.id).limit(limit)
    if state is not None:
        statement = statement.where(jobs.c.state == state.value)
    if kinds is not None:
        statement = statement.where(jobs.c.kind.in_(list(kinds)))
    if subject_ids is not None:
        statement = statement.where(jobs.c.subject_id.in_(list(subject_ids)))
    if after_id is not None:
        statement = statement.where(jobs.c.id > after_id)
    return [_to_job(row) for row in await conn.execute(statement)]


async def rerun(conn: AsyncConnection, job_id: int, *, now: datetime) -> bool:
    """Revive a dead job with a fresh set of attempts; False unless it was dead.

    A keyed job goes to the end of its key's queue: the jobs behind it went on when it died.
    """
    job = await get(conn, job_id)
    if job is None or job.state is not JobState.DEAD:
        return False
    after_id = job.after_id
    if job.ordering_key is not None:
        newest = (await chains.newest_jobs(conn, [job.ordering_key])).get(job.ordering_key)
        if newest is not None and newest != job.id:
            after_id = newest
        await chains.move_newest(conn, {job.ordering_key: job.id})
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == JobState.DEAD.value)
        .values(
            state=JobState.PENDING.value,
            attempts=0,
            run_at=now,
            finished_at=None,
            locked_by=None,
            after_id=after_id,
            blocked=0,
        )
    )
    return result.rowcount == 1


async def count_by_state(conn: AsyncConnection) -> dict[JobState, int]:
    """How many jobs are in each state, every state present (zero when empty)."""
    counts = dict.fromkeys(JobState, 0)
    statement = select(jobs.c.state, func.count()).group_by(jobs.c.state)
    for state, count in await conn.execute(statement):
        counts[JobState(state)] = int(count)
    return counts


def _update_held_many(job_ids: Sequence[int], worker_id: str) -> Update:
    return update(jobs).where(
        jobs.c.id.in_(list(job_ids)),
        jobs.c.state == JobState.RUNNING.value,
        jobs.c.locked_by == worker_id,
    )


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _to_job(row: Row[Any]) -> Job:
    return Job(
        id=int(row.id),
        kind=row.kind,
        payload=orjson.loads(row.payload),
        queue=row.queue,
        ordering_key=row.ordering_key,
        after_id=row.after_id,
        subject_id=row.subject_id,
        state=JobState(row.state),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        run_at=row.run_at,
        locked_by=row.locked_by,
        lease_expires_at=row.lease_expires_at,
        last_error=row.last_error,
        created_at=row.created_at,
        finished_at=row.finished_at,
        trace_id=row.trace_id,
    )
