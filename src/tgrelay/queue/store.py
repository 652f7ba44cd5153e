"""The queue's SQL: one function per state change, shared by SQLite and PostgreSQL.

Functions taking a connection join the caller's transaction, so a job commits or vanishes
with the work that asked for it. Functions taking the `Database` open their own short one.
State changes of a running job check `locked_by`, so a worker whose lease was rescued
cannot overwrite what the job's next holder did. Done and dead jobs keep `locked_by` to
show which worker ran them last; pending ones have none.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Row,
    Select,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import FromClause, Insert, Update
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.operators import custom_op

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
_E = TypeVar("_E")


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
        "payload": encode_payload(job.payload),
        "ordering_key": job.ordering_key,
        "subject_id": job.subject_id,
        "state": JobState.PENDING.value,
        "attempts": 0,
        "max_attempts": job.max_attempts or default_max_attempts,
        "run_at": job.run_at or now,
        "created_at": now,
    }


def encode_payload(payload: Mapping[str, Any]) -> str:
    """A job's payload as its column holds it."""
    return orjson.dumps(dict(payload)).decode()


async def enqueue(
    conn: AsyncConnection, new_jobs: Sequence[NewJob], *, now: datetime, default_max_attempts: int
) -> list[int]:
    """Insert jobs in the caller's transaction with one multi-row INSERT; ids in input order."""
    if not new_jobs:
        return []
    rows = [job_values(job, now=now, default_max_attempts=default_max_attempts) for job in new_jobs]
    # insertmanyvalues batches the rows into one INSERT … RETURNING and, with
    # sort_by_parameter_order, matches the returned ids to the rows whatever order they come in.
    result = await conn.execute(_INSERT_JOBS, rows)
    return [int(row.id) for row in result]


_INSERT_JOBS: Insert = jobs.insert().returning(jobs.c.id, sort_by_parameter_order=True)


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
    params = {
        "claim_now": now,
        "claim_worker": worker_id,
        "claim_lease_expires_at": now + timedelta(seconds=lease_seconds),
    }
    async with db.transaction() as conn:
        if db.is_postgres:
            ids = [int(row.id) for row in await conn.execute(_postgres_pick(lane, limit), params)]
            if not ids:
                return []
            result = await conn.execute(_postgres_claim(), params | {"claim_ids": ids})
        else:
            result = await conn.execute(_sqlite_claim(lane, limit), params)
        return sorted((_to_job(row) for row in result), key=lambda job: job.id)


# Claim statements are built once per lane and batch size, then reused with new parameters:
# building and hashing them cost more than SQLite took to run them.
_NOW = bindparam("claim_now", type_=jobs.c.run_at.type)
_START_RUNNING = {
    "state": JobState.RUNNING.value,
    "attempts": jobs.c.attempts + 1,
    "locked_by": bindparam("claim_worker"),
    "lease_expires_at": bindparam("claim_lease_expires_at", type_=jobs.c.lease_expires_at.type),
}


@functools.lru_cache(maxsize=256)
def _sqlite_claim(lane: Lane, limit: int) -> ReturningUpdate[Any]:
    # BEGIN IMMEDIATE already serialises writers: one statement is enough.
    claimable = candidates(_NOW, limit, lane, hints=SQLITE_HINTS)
    return update(jobs).where(jobs.c.id.in_(claimable)).values(_START_RUNNING).returning(*jobs.c)


@functools.lru_cache(maxsize=256)
def _postgres_pick(lane: Lane, limit: int) -> Select[tuple[int]]:
    """Lock due candidates (skipping rows other claimers hold) and, per key, a transaction lock.

    A row another claimer locked is skipped, yet still heads its key, because it is pending
    in this snapshot. The key lock closes the remaining gap: two claimers whose snapshots
    each show a different job of one key as its head.
    """
    picked = (
        candidates(_NOW, limit, lane, hints=NO_HINTS)
        .add_columns(_CANDIDATE.c.ordering_key)
        .with_for_update(skip_locked=True, of=_CANDIDATE)
        .cte("picked")
        .prefix_with("MATERIALIZED")  # evaluate the locking SELECT once, before the key locks
    )
    key_lock = func.pg_try_advisory_xact_lock(
        func.hashtextextended(picked.c.ordering_key, 0), type_=Boolean
    )
    return select(picked.c.id).where(or_(picked.c.ordering_key.is_(None), key_lock))


@functools.cache
def _postgres_claim() -> ReturningUpdate[Any]:
    # A new statement, hence a new snapshot, taken after the key locks were granted: it sees
    # every claim of these keys that committed before, so the check is exact.
    return (
        update(jobs)
        .where(
            jobs.c.id.in_(bindparam("claim_ids", expanding=True)),
            jobs.c.state == JobState.PENDING.value,
            _is_free_head(jobs, hints=NO_HINTS),
        )
        .values(_START_RUNNING)
        .returning(*jobs.c)
    )


def candidates(
    now: datetime | ColumnElement[Any], limit: int, lane: Lane, *, hints: PlanHints
) -> Select[tuple[int]]:
    """Claimable jobs, oldest due first: a walk along ix_jobs_state_run_at that stops early.

    Ordering by id instead would let PostgreSQL walk the primary key from the oldest (done)
    jobs, or make SQLite sort every due job.
    """
    return (
        select(_CANDIDATE.c.id)
        .where(*_due_in_lane(now, lane, hints), _is_free_head(_CANDIDATE, hints=hints))
        .order_by(_CANDIDATE.c.run_at, _CANDIDATE.c.id)
        .limit(limit)
    )


async def any_due(db: Database, *, now: datetime, lane: Lane = ALL_KINDS) -> bool:
    """Whether a pending job of the lane is due: a read, taking no lock, before a claim.

    It ignores ordering keys, so it may say yes when every due job waits behind its key's
    running head; the claim that follows then finds nothing, as it would have anyway.
    """
    hints = SQLITE_HINTS if db.is_sqlite else NO_HINTS
    query = select(_CANDIDATE.c.id).where(*_due_in_lane(now, lane, hints)).limit(1)
    async with db.engine.connect() as conn:
        return (await conn.execute(query)).first() is not None


def _due_in_lane(
    now: datetime | ColumnElement[Any], lane: Lane, hints: PlanHints
) -> list[Condition]:
    kind = hints.unindexed(_CANDIDATE.c.kind)
    terms = [hints.rare(_CANDIDATE.c.state == JobState.PENDING.value), _CANDIDATE.c.run_at <= now]
    if lane.only is not None:
        terms.append(kind.in_(sorted(lane.only)))
    if lane.excluding:
        terms.append(kind.not_in(sorted(lane.excluding)))
    return terms


def _is_free_head(target: FromClause, *, hints: PlanHints) -> Condition:
    """No key, or the oldest unfinished job of its key while none of that key runs.

    Computed from unfinished jobs only (found through the state index), never by probing a
    key's history, so a chat with a million done jobs costs no more than a new one.
    """
    unfinished = jobs.alias("unfinished")
    key = hints.unindexed(unfinished.c.ordering_key)
    running = case((unfinished.c.state == JobState.RUNNING.value, 1), else_=0)
    free_heads = (
        select(func.min(unfinished.c.id))
        .where(hints.rare(unfinished.c.state.in_(UNFINISHED)), key.is_not(None))
        .group_by(key)
        .having(func.sum(running) == 0)
    )
    return or_(hints.unindexed(target.c.ordering_key).is_(None), target.c.id.in_(free_heads))


@dataclass(frozen=True, kw_only=True)
class PlanHints:
    """How a claim steers a backend's query planner along ix_jobs_state_run_at.

    Pending and running jobs are few; done ones pile up. SQLite's planner did not see it:
    it took ix_jobs_kind_subject_id for a lane's `kind IN (…)` and an index on
    (ordering_key, id), since dropped, for the heads' GROUP BY, walking every job ever run
    (13 and 31 ms per claim with 100,000 done jobs, against 0.03 and 0.3 ms along the state
    index), or, after ANALYZE, scanned the whole table. PostgreSQL's statistics see the
    skew by themselves.
    """

    rare: Callable[[Condition], Condition]  # a condition few rows meet
    unindexed: Callable[[ColumnElement[Any]], ColumnElement[Any]]  # a column no index serves


def _unlikely(condition: Condition) -> Condition:
    """SQLite's unlikely(): sqlite_stat1 only knows how many values `state` takes and
    assumes they are equally common."""
    # Untyped on purpose: a Boolean function would be rendered as `unlikely(…) = 1` on SQLite,
    # which hides the term from the index.
    return cast(Condition, func.unlikely(condition))


def _unary_plus(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """`+column`: the same value, which by SQLite's documented rule no index may serve."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _as_is(element: _E) -> _E:
    return element


SQLITE_HINTS = PlanHints(rare=_unlikely, unindexed=_unary_plus)
NO_HINTS = PlanHints(rare=_as_is, unindexed=_as_is)


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
    return {int(row.id) for row in await conn.execute(_COMPLETE_MANY, params)}


# Built once: each worker commit runs it, and hashing a fresh statement cost as much as running it.
_COMPLETE_MANY = (
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
    result = await conn.execute(_update_held_many([job.id], worker_id).values(changes))
    return result.rowcount == 1


async def release(db: Database, job_ids: Sequence[int], *, worker_id: str) -> int:
    """Hand running jobs back on shutdown, attempts given back; returns how many were held."""
    if not job_ids:
        return 0
    async with db.transaction() as conn:
        result = await conn.execute(
            _update_held_many(job_ids, worker_id).values(
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
    hints = SQLITE_HINTS if db.is_sqlite else NO_HINTS
    expired = (
        select(jobs.c.id)
        .where(hints.rare(jobs.c.state == JobState.RUNNING.value), jobs.c.lease_expires_at < now)
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


def _update_held_many(job_ids: Sequence[int], worker_id: str) -> Update:
    return update(jobs).where(
        jobs.c.id.in_(list(job_ids)),
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
