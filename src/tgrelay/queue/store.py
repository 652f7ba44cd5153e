"""The queue's SQL: one function per state change, shared by SQLite and PostgreSQL.

Functions taking a connection join the caller's transaction, so a job commits or vanishes
with the work that asked for it. Functions taking the `Database` open their own short one.
State changes of a running job check `locked_by`, so a worker whose lease was rescued
cannot overwrite what the job's next holder did. Done and dead jobs keep `locked_by` to
show which worker ran them last; pending ones have none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Boolean, ColumnElement, Row, Select, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause, Insert, Update

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.queue import retry
from tgrelay.queue.models import ALL_KINDS, Job, JobState, Lane, NewJob

jobs = tables.jobs
MAX_ERROR_LENGTH = 2000
LEASE_EXPIRED = "lease expired"
UNFINISHED = (JobState.PENDING.value, JobState.RUNNING.value)
Condition = ColumnElement[bool]
_CANDIDATE = jobs.alias("candidate")


# The columns a new job's row sets; the rest take their defaults.
JOB_COLUMNS = (
    "kind",
    "payload",
    "ordering_key",
    "subject_id",
    "state",
    "attempts",
    "max_attempts",
    "run_at",
    "created_at",
)


def job_values(job: NewJob, *, now: datetime, default_max_attempts: int) -> dict[str, Any]:
    """The row of a new job (JOB_COLUMNS); shared with writers that batch their own INSERTs."""
    return {
        "kind": job.kind,
        "payload": orjson.dumps(dict(job.payload)).decode(),
        "ordering_key": job.ordering_key,
        "subject_id": job.subject_id,
        "state": JobState.PENDING.value,
        "attempts": 0,
        "max_attempts": job.max_attempts or default_max_attempts,
        "run_at": job.run_at or now,
        "created_at": now,
    }


async def enqueue(
    conn: AsyncConnection, new_jobs: Sequence[NewJob], *, now: datetime, default_max_attempts: int
) -> list[int]:
    """Insert jobs in the caller's transaction with one multi-row INSERT; ids in input order."""
    if not new_jobs:
        return []
    rows = [job_values(job, now=now, default_max_attempts=default_max_attempts) for job in new_jobs]
    # insertmanyvalues batches the rows into one INSERT … RETURNING and, with
    # sort_by_parameter_order, matches the returned ids to the rows whatever order they come in.
    statement: Insert = jobs.insert().returning(jobs.c.id, sort_by_parameter_order=True)
    result = await conn.execute(statement, rows)
    return [int(row.id) for row in result]


async def claim(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    now: datetime,
    lease_seconds: float,
    lane: Lane = ALL_KINDS,
) -> list[Job]:
    """Move up to `limit` claimable jobs to running under `worker_id`'s lease.

    Claimable: pending, due, and the head (oldest unfinished job) of its ordering key while
    no job of that key runs. "No job of that key runs" also covers a rerun dead job, older
    than the running one, and ids that committed out of order on PostgreSQL. Due jobs go
    oldest due first (run_at, then id), the order of `ix_jobs_state_run_at`.
    """
    if limit <= 0:
        return []
    start_running = {
        "state": JobState.RUNNING.value,
        "attempts": jobs.c.attempts + 1,
        "locked_by": worker_id,
        "lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    async with db.transaction() as conn:
        if db.is_postgres:
            ids = await _lock_candidates_postgres(conn, limit=limit, now=now, lane=lane)
            if not ids:
                return []
            # A new statement, hence a new snapshot, taken after the key locks were granted:
            # it sees every claim of these keys that committed before, so the check is exact.
            statement = update(jobs).where(
                jobs.c.id.in_(ids),
                jobs.c.state == JobState.PENDING.value,
                _is_free_head(jobs, rare=_as_is),
            )
        else:
            # BEGIN IMMEDIATE already serialises writers: one statement is enough.
            candidates = _candidates(now, limit, lane, rare=_unlikely)
            statement = update(jobs).where(jobs.c.id.in_(candidates))
        result = await conn.execute(statement.values(start_running).returning(*jobs.c))
        return sorted((_to_job(row) for row in result), key=lambda job: job.id)


async def _lock_candidates_postgres(
    conn: AsyncConnection, *, limit: int, now: datetime, lane: Lane
) -> list[int]:
    """Lock due candidates (skipping rows other claimers hold) and, per key, a transaction lock.

    A row another claimer locked is skipped, yet still heads its key, because it is pending
    in this snapshot. The key lock closes the remaining gap: two claimers whose snapshots
    each show a different job of one key as its head.
    """
    picked = (
        _candidates(now, limit, lane, rare=_as_is)
        .add_columns(_CANDIDATE.c.ordering_key)
        .with_for_update(skip_locked=True, of=_CANDIDATE)
        .cte("picked")
        .prefix_with("MATERIALIZED")  # evaluate the locking SELECT once, before the key locks
    )
    key_lock = func.pg_try_advisory_xact_lock(
        func.hashtextextended(picked.c.ordering_key, 0), type_=Boolean
    )
    statement = select(picked.c.id).where(or_(picked.c.ordering_key.is_(None), key_lock))
    return [int(row.id) for row in await conn.execute(statement)]


def _candidates(
    now: datetime, limit: int, lane: Lane, *, rare: Callable[[Condition], Condition]
) -> Select[tuple[int]]:
    """Claimable jobs, oldest due first: a walk along ix_jobs_state_run_at that stops early.

    Ordering by id instead would let PostgreSQL walk the primary key from the oldest (done)
    jobs, or make SQLite sort every due job.
    """
    in_lane: list[Condition] = []
    if lane.only is not None:
        in_lane.append(_CANDIDATE.c.kind.in_(sorted(lane.only)))
    if lane.excluding:
        in_lane.append(_CANDIDATE.c.kind.not_in(sorted(lane.excluding)))
    return (
        select(_CANDIDATE.c.id)
        .where(
            rare(_CANDIDATE.c.state == JobState.PENDING.value),
            _CANDIDATE.c.run_at <= now,
            *in_lane,
            _is_free_head(_CANDIDATE, rare=rare),
        )
        .order_by(_CANDIDATE.c.run_at, _CANDIDATE.c.id)
        .limit(limit)
    )


def _is_free_head(target: FromClause, *, rare: Callable[[Condition], Condition]) -> Condition:
    """No key, or the oldest unfinished job of its key while none of that key runs.

    Computed from unfinished jobs only (found through the state index), never by probing a
    key's history, so a chat with a million done jobs costs no more than a new one.
    """
    unfinished = jobs.alias("unfinished")
    running = case((unfinished.c.state == JobState.RUNNING.value, 1), else_=0)
    free_heads = (
        select(func.min(unfinished.c.id))
        .where(rare(unfinished.c.state.in_(UNFINISHED)), unfinished.c.ordering_key.is_not(None))
        .group_by(unfinished.c.ordering_key)
        .having(func.sum(running) == 0)
    )
    return or_(target.c.ordering_key.is_(None), target.c.id.in_(free_heads))


def _unlikely(condition: Condition) -> Condition:
    """Tell SQLite's planner that few rows match (pending and running jobs are few).

    After ANALYZE, sqlite_stat1 only knows how many values `state` takes and assumes they
    are equally common; it then prefers scanning a key index over every job ever run.
    PostgreSQL's statistics see the skew by themselves.
    """
    # Untyped on purpose: a Boolean function would be rendered as `unlikely(…) = 1` on SQLite,
    # which hides the term from the index.
    return cast(Condition, func.unlikely(condition))


def _as_is(condition: Condition) -> Condition:
    return condition


async def complete(conn: AsyncConnection, job_id: int, *, worker_id: str, now: datetime) -> bool:
    """Mark a job done; False when `worker_id` no longer holds it (its lease was rescued)."""
    result = await conn.execute(
        _update_held(job_id, worker_id).values(
            state=JobState.DONE.value, finished_at=now, lease_expires_at=None
        )
    )
    return result.rowcount == 1


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
        _update_held(job.id, worker_id).values(
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
        _update_held(job.id, worker_id).values(
            state=JobState.DEAD.value,
            last_error=_truncate(error),
            finished_at=now,
            lease_expires_at=None,
        )
    )
    return result.rowcount == 1


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
    result = await conn.execute(_update_held(job.id, worker_id).values(changes))
    return result.rowcount == 1


async def release(db: Database, job_ids: Sequence[int], *, worker_id: str) -> int:
    """Hand running jobs back on shutdown, attempts given back; returns how many were held."""
    if not job_ids:
        return 0
    async with db.transaction() as conn:
        result = await conn.execute(
            update(jobs)
            .where(
                jobs.c.id.in_(list(job_ids)),
                jobs.c.state == JobState.RUNNING.value,
                jobs.c.locked_by == worker_id,
            )
            .values(
                state=JobState.PENDING.value,
                attempts=jobs.c.attempts - 1,
                locked_by=None,
                lease_expires_at=None,
            )
        )
        return result.rowcount


async def extend_leases(
    db: Database, job_ids: Sequence[int], *, worker_id: str, now: datetime, lease_seconds: float
) -> int:
    """Renew the leases of jobs a live worker still runs, so long handlers are not rescued."""
    if not job_ids:
        return 0
    async with db.transaction() as conn:
        result = await conn.execute(
            update(jobs)
            .where(
                jobs.c.id.in_(list(job_ids)),
                jobs.c.state == JobState.RUNNING.value,
                jobs.c.locked_by == worker_id,
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        return result.rowcount


async def rescue_expired(db: Database, *, now: datetime) -> int:
    """Return running jobs whose worker vanished to pending; dead if that was their last try.

    The attempt stays counted: a job that kills its worker must not be retried forever.
    """
    exhausted = jobs.c.attempts >= jobs.c.max_attempts
    # SKIP LOCKED (ignored by SQLite) keeps two rescuers on PostgreSQL from deadlocking.
    rare = _unlikely if db.is_sqlite else _as_is
    expired = (
        select(jobs.c.id)
        .where(rare(jobs.c.state == JobState.RUNNING.value), jobs.c.lease_expires_at < now)
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
        )
        return result.rowcount


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
    """Revive a dead job with a fresh set of attempts; False unless it was dead."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == JobState.DEAD.value)
        .values(
            state=JobState.PENDING.value, attempts=0, run_at=now, finished_at=None, locked_by=None
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


def _update_held(job_id: int, worker_id: str) -> Update:
    return update(jobs).where(
        jobs.c.id == job_id,
        jobs.c.state == JobState.RUNNING.value,
        jobs.c.locked_by == worker_id,
    )


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


def _to_job(row: Row[Any]) -> Job:
    values = row._mapping
    return Job(
        id=int(values["id"]),
        kind=values["kind"],
        payload=orjson.loads(values["payload"]),
        ordering_key=values["ordering_key"],
        subject_id=values["subject_id"],
        state=JobState(values["state"]),
        attempts=values["attempts"],
        max_attempts=values["max_attempts"],
        run_at=values["run_at"],
        locked_by=values["locked_by"],
        lease_expires_at=values["lease_expires_at"],
        last_error=values["last_error"],
        created_at=values["created_at"],
        finished_at=values["finished_at"],
    )
