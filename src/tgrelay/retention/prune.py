"""Deleting finished rows past their age, a batch per short write transaction.

Each table is walked in the order its rows were written: by id where ids grow with time
(updates, jobs, deliveries, audit rows), by `(workspace_id, created_at)` for events, whose
ids are random. The window of the next batch's candidates is read without the write lock;
the write transaction then deletes, by primary key, those that still meet every condition
(re-checked there, so a job claimed or a delivery replayed in between is kept). Batches are
sized by how long the last one held the lock (`next_batch_size`), and their statements are
prepared once per round (`db/prepared.Prepared`): inside SQLite's lock a batch costs
sqlite3's work, not SQLAlchemy's.
A walk by id stops at the first row written after the cutoff: later ids are younger, give or
take the skew between concurrent writers, and a row left behind by that skew goes in the
next round. Rows that are old but not finished (a job still pending) are read again each
round; they are rare, as nothing stays unfinished for the weeks a retention spans.

No index was added for these: every read goes by primary key or by an index the tables
already had (`ix_jobs_kind_subject_id` for an update's job, `uq_deliveries_event_id_…` for an
event's deliveries, `ix_delivery_attempts_delivery_id`, `ix_events_workspace_id_created_at`),
so the intake's inserts pay nothing for retention.

Chat windows (TGRELAY_INBOUND_CHAT_LIMIT) that have ended go too, oldest first by
`ix_chat_windows_started_at` (without it each read scanned the table), unless the chat still
has unprocessed updates: those are judged by when they arrived, possibly inside the ended
window, which must still count them. Its newest job (`job_keys`, by primary key) tells.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import takewhile

import structlog
from sqlalchemy import (
    Column,
    ColumnElement,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.db.prepared import Prepared
from tgrelay.events.models import DeliveryStatus
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.queue.models import JobState
from tgrelay.retention.policy import Kind, Policy, cutoffs, windows_cutoff

log = structlog.get_logger(__name__)

# Rows per write transaction at most, from `bench/retention.py batches` (SQLite,
# synchronous=FULL, 20,000 old updates each with its job, a delivered event and an attempt;
# the shared 2-core machine): 500 rows held the write lock 2–9 ms at p50 and at most 10–17 ms,
# whatever the table; 2,000 at most 26–52 ms, the whole ~50 ms budget. (Prepared, and the
# jobs found by id: 500 rows 1.7–5.9 ms at p50.)
BATCH_SIZE = 500
# What a batch's hold on the write lock is aimed at: each table's next batch is sized from
# its last one (`next_batch_size`). Every ack that comes meanwhile waits for the whole hold,
# and the intake's goal is a p99 of 10 ms; `bench/soak.py` found 500-row batches holding it
# over 10 ms in 70 % of cases at a slow hour.
BATCH_SECONDS = 0.005
# The runner's pause after a batch, in multiples of the batch's hold on the write lock: while
# the pruner has rows to delete it holds the lock at most a quarter of the time, and the
# intake's writer (another process, which looks for the lock every half millisecond) and
# the updates worker get it in between. A fixed 20 ms pause, once batches held the lock ~2 ms,
# let the pruner fall behind 1,000 updates/s in `bench/soak.py`.
PAUSE_PER_HOLD = 3.0
PAUSE_SECONDS = 0.002  # the shortest pause

FINISHED_DELIVERY = (DeliveryStatus.DELIVERED.value, DeliveryStatus.DEAD_LETTER.value)
UNFINISHED_JOB = (JobState.PENDING.value, JobState.RUNNING.value)


@dataclass(frozen=True, kw_only=True)
class Batch:
    """One write transaction of a round, as observed (logs, tests, bench/retention.py)."""

    table: str  # the table walked
    size: int  # rows of it the batch read: its batch size then
    deleted: Mapping[str, int]  # rows deleted per table (a delivery takes its attempts along)
    seconds: float  # wall time inside the write transaction (from BEGIN's return), commit included


# Awaited between two batches, with the one just written; False ends the round (the
# runner's lease was lost).
Between = Callable[[Batch], Awaitable[bool]]
Observe = Callable[[Batch], None]


async def _always(_: Batch) -> bool:
    return True


def _ignore(_: Batch) -> None:
    return None


def next_batch_size(size: int, seconds: float, *, target: float, most: int) -> int:
    """The size of a table's next batch, after one of `size` rows held the lock `seconds`:
    scaled towards `target`, by at most a halving or a doubling (one slow commit is not a
    trend), and between a tenth of `most` and `most`: a hold also counts the commit's way
    back through a busy event loop, and batches of a row or two could not keep up."""
    wanted = most if seconds <= 0 else int(size * target / seconds)
    return max(most // 10, 1, size // 2, min(wanted, size * 2, most))


@dataclass(kw_only=True)
class _Walk:
    db: Database
    batch_size: int
    between: Between
    observe: Observe
    batch_seconds: float | None  # None: every batch of batch_size rows
    clock: Callable[[], float]
    sizes: dict[str, int]  # each table's next batch
    deleted: Counter[str] = field(default_factory=Counter)
    last: Batch | None = None  # the round's latest batch
    stopped: bool = False  # `between` said no: the round ends

    async def may_write(self) -> bool:
        """Before each write transaction but the first, wait `between` and heed its answer."""
        if not self.stopped and self.last is not None and not await self.between(self.last):
            self.stopped = True
        return not self.stopped

    def size(self, table: str) -> int:
        """How many rows of `table` the next batch takes: batch_size at first, then as the
        table's last batch took."""
        return self.sizes.get(table, self.batch_size)

    @asynccontextmanager
    async def batch(
        self, table: str, size: int
    ) -> AsyncIterator[tuple[AsyncConnection, dict[str, int]]]:
        """One write transaction of a batch of `size` rows of `table`: the caller deletes
        on the connection and counts the rows per table in the dict; then it is recorded,
        and the table's next size follows from its time."""
        deleted: dict[str, int] = {}
        async with self.db.transaction() as conn:
            # From here: the wait for the lock (or, on SQLite, for this process's other
            # writers' turns) is not the batch's doing, and its size should not follow it.
            started = self.clock()
            yield conn, deleted
        batch = Batch(table=table, size=size, deleted=deleted, seconds=self.clock() - started)
        if self.batch_seconds is not None:
            self.sizes[table] = next_batch_size(
                size, batch.seconds, target=self.batch_seconds, most=self.batch_size
            )
        self.last = batch
        self.deleted.update(deleted)
        self.observe(batch)


async def prune(
    db: Database,
    policy: Policy,
    *,
    now: datetime,
    batch_size: int = BATCH_SIZE,
    batch_seconds: float | None = BATCH_SECONDS,
    between: Between = _always,
    observe: Observe = _ignore,
    clock: Callable[[], float] = time.perf_counter,
    sizes: dict[str, int] | None = None,
) -> dict[str, int]:
    """One round: delete every finished row past its age, and every ended chat window, at
    `now`. Returns rows per table.

    A table's first batch takes up to `batch_size` rows, the next ones as many as should
    hold the write lock `batch_seconds` (timed with `clock`), never more than `batch_size`.
    `sizes` (each table's next batch size, updated in place) carries them from one round to
    the next, so that a round's first batches are sized too.
    Deliveries (with their attempts) go before events, as an event goes only once no
    delivery of it is left; `between` is awaited between any two batches.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if batch_seconds is not None and batch_seconds <= 0:
        raise ValueError("batch_seconds must be positive")
    cut = cutoffs(policy, now)
    walk = _Walk(
        db=db,
        batch_size=batch_size,
        batch_seconds=batch_seconds,
        between=between,
        observe=observe,
        clock=clock,
        sizes={} if sizes is None else sizes,
    )
    if Kind.JOBS in cut or Kind.DEAD_JOBS in cut:
        await _by_id(walk, _jobs(cut.get(Kind.JOBS), cut.get(Kind.DEAD_JOBS)))
    if Kind.UPDATES in cut:
        await _by_id(walk, _updates(cut[Kind.UPDATES]))
    if Kind.EVENTS in cut:
        await _by_id(walk, _deliveries(cut[Kind.EVENTS]))
        await _events(walk, cut[Kind.EVENTS])
    if Kind.AUDIT in cut:
        await _by_id(walk, _audit(cut[Kind.AUDIT]))
    await _windows(walk, windows_cutoff(policy, now))
    return {table: count for table, count in walk.deleted.items() if count}


@dataclass(frozen=True, kw_only=True)
class _Sweep:
    """A table walked by id: which rows are old, which are finished, what goes with them."""

    table: Table
    born: Column[datetime]  # when the row was written; grows with its id
    cutoff: datetime  # rows born before it are old enough, if they are finished
    finished: ColumnElement[bool]  # the rest of the condition, checked at the delete
    # Rows elsewhere that point at a deleted row (by this column) and go first.
    dependents: Sequence[Column[int]] = ()


def _jobs(done_cutoff: datetime | None, dead_cutoff: datetime | None) -> _Sweep:
    jobs = tables.jobs
    cutoff_of_state = [
        (state.value, cutoff)
        for state, cutoff in ((JobState.DONE, done_cutoff), (JobState.DEAD, dead_cutoff))
        if cutoff is not None
    ]
    # Done or dead, and finished before that state's cutoff; any other state has no cutoff
    # (NULL), so its jobs stay. One comparison with the state inside a CASE, where
    # `state = 'done' AND …` would let SQLite's planner (without statistics) prefer
    # ix_jobs_state_run_at to the ids of the batch, and read every done job for each batch.
    finished = jobs.c.finished_at < case(
        *[(jobs.c.state == state, cutoff) for state, cutoff in cutoff_of_state]
    )
    # A job is created before it finishes, so one finished before its cutoff was born so too.
    walk_to = max(cutoff for _, cutoff in cutoff_of_state)
    return _Sweep(table=jobs, born=jobs.c.created_at, cutoff=walk_to, finished=finished)


def _updates(cutoff: datetime) -> _Sweep:
    updates, jobs = tables.updates, tables.jobs
    # The update's process_update job is done, dead or already pruned (ix_jobs_kind_subject_id).
    unfinished_job = exists().where(
        jobs.c.kind == PROCESS_UPDATE,
        jobs.c.subject_id == updates.c.id,
        jobs.c.state.in_(UNFINISHED_JOB),
    )
    return _Sweep(
        table=updates, born=updates.c.received_at, cutoff=cutoff, finished=~unfinished_job
    )


def _deliveries(cutoff: datetime) -> _Sweep:
    deliveries = tables.deliveries
    return _Sweep(
        table=deliveries,
        born=deliveries.c.created_at,
        cutoff=cutoff,
        # A replay makes a dead letter pending again and moves updated_at.
        finished=and_(deliveries.c.status.in_(FINISHED_DELIVERY), deliveries.c.updated_at < cutoff),
        dependents=(tables.delivery_attempts.c.delivery_id,),
    )


def _audit(cutoff: datetime) -> _Sweep:
    audit = tables.audit_log
    return _Sweep(table=audit, born=audit.c.created_at, cutoff=cutoff, finished=true())


class _Statements:
    """A sweep's statements, built once per round (its cutoff is in them) and run prepared:
    SQLAlchemy's per-call work would otherwise be part of every batch's hold on the lock."""

    def __init__(self, sweep: _Sweep) -> None:
        table, id_ = sweep.table, sweep.table.c.id
        # Whether each row is old, not when it was born: reading a timestamp back costs
        # its parse, for every row of every window, on serve's loop.
        self.window = (
            select(id_, (sweep.born < sweep.cutoff).label("old"), sweep.finished.label("finished"))
            .where(id_ > bindparam("after"))
            .order_by(id_)
            .limit(bindparam("size"))
        )
        # The window's finished rows, re-checked there (a job claimed or a delivery replayed
        # in between is kept), by their ids: tests/retention/test_prune_plan.py checks that
        # each statement searches them by primary key.
        chosen = id_.in_(bindparam("ids", expanding=True))
        doomed = and_(chosen, sweep.born < sweep.cutoff, sweep.finished)
        # With dependents the ids are read first; FOR UPDATE (PostgreSQL) holds back a
        # replay of these rows until they are gone.
        self.doomed_ids = Prepared(select(id_).where(doomed).with_for_update())
        self.delete_doomed = Prepared(delete(table).where(doomed).returning(id_))
        self.delete_chosen = Prepared(delete(table).where(chosen).returning(id_))
        self.delete_dependents = [
            Prepared(
                delete(column.table)
                .where(column.in_(bindparam("ids", expanding=True)))
                .returning(column)
            )
            for column in sweep.dependents
        ]


async def _by_id(walk: _Walk, sweep: _Sweep) -> None:
    statements = _Statements(sweep)
    after = 0  # ids start at 1
    while not walk.stopped:
        size = walk.size(sweep.table.name)
        async with walk.db.engine.connect() as conn:  # a read: no write lock
            rows = (await conn.execute(statements.window, {"after": after, "size": size})).all()
        old = list(takewhile(lambda row: row.old, rows))
        # Old rows not finished yet (a pending job) cost this read, never a write transaction.
        doomed = [row.id for row in old if row.finished]
        if doomed and await walk.may_write():
            await _delete(walk, sweep, statements, doomed, size)
        if len(old) < size:  # a young row, or the table's end
            return
        after = old[-1].id


async def _delete(
    walk: _Walk, sweep: _Sweep, statements: _Statements, ids: list[int], size: int
) -> None:
    table = sweep.table.name
    async with walk.batch(table, size) as (conn, deleted):
        if not sweep.dependents:
            deleted[table] = len(await statements.delete_doomed(conn, {"ids": ids}))
        elif doomed := [row.id for row in await statements.doomed_ids(conn, {"ids": ids})]:
            for column, dependents in zip(
                sweep.dependents, statements.delete_dependents, strict=True
            ):
                deleted[column.table.name] = len(await dependents(conn, {"ids": doomed}))
            deleted[table] = len(await statements.delete_chosen(conn, {"ids": doomed}))


async def _events(walk: _Walk, cutoff: datetime) -> None:
    """Events past their age with no delivery left, walked per workspace by creation time."""
    events, deliveries = tables.events, tables.deliveries
    condition = and_(
        events.c.created_at < cutoff, ~exists().where(deliveries.c.event_id == events.c.id)
    )
    window = (
        select(events.c.id)
        .where(events.c.workspace_id == bindparam("workspace_id"), condition)
        .order_by(events.c.created_at)
        .limit(bindparam("size"))
    )
    # Re-checked: an event replayed in between (a delivery again) is kept.
    doomed = Prepared(
        delete(events)
        .where(events.c.id.in_(bindparam("ids", expanding=True)), condition)
        .returning(events.c.id)
    )
    async with walk.db.engine.connect() as conn:
        workspace_ids = list(
            await conn.scalars(select(tables.workspaces.c.id).order_by(tables.workspaces.c.id))
        )
    for workspace_id in workspace_ids:
        while not walk.stopped:
            size = walk.size(events.name)
            async with walk.db.engine.connect() as conn:
                ids = list(await conn.scalars(window, {"workspace_id": workspace_id, "size": size}))
            if not ids or not await walk.may_write():
                break
            async with walk.batch(events.name, size) as (conn, deleted):
                deleted[events.name] = len(await doomed(conn, {"ids": ids}))
            # Fewer than asked: the workspace is done. None deleted: every one of them got a
            # delivery in between (a replay); leave them to the next round rather than loop.
            if len(ids) < size or deleted[events.name] == 0:
                break


def _ended_windows(cutoff: datetime) -> ColumnElement[bool]:
    """A chat window that has ended at the cutoff, of a chat with no update left to process."""
    windows, keys, jobs = tables.chat_windows, tables.job_keys, tables.jobs
    # The chat's ordering key, as `IncomingUpdate.ordering_key` spells it: "chat:{bot}:{chat}".
    key = (
        literal("chat:", String)
        + cast(windows.c.bot_id, String)
        + ":"
        + cast(windows.c.chat_id, String)
    )
    # Jobs of a key run one after another, so while its newest job is unfinished the chat
    # may have updates to be counted in this window; once that job is finished, none.
    unprocessed = exists().where(
        keys.c.ordering_key == key,
        jobs.c.id == keys.c.last_job_id,
        jobs.c.state.in_(UNFINISHED_JOB),
    )
    return and_(windows.c.started_at <= cutoff, ~unprocessed)


async def _windows(walk: _Walk, cutoff: datetime) -> None:
    """Ended chat windows, oldest first, a batch per write transaction."""
    windows = tables.chat_windows
    condition = _ended_windows(cutoff)
    while not walk.stopped:
        size = walk.size(windows.name)
        window = (
            select(windows.c.bot_id, windows.c.chat_id)
            .where(condition)
            .order_by(windows.c.started_at)
            .limit(size)
        )
        async with walk.db.engine.connect() as conn:  # a read: no write lock
            chats = (await conn.execute(window)).all()
        if not chats or not await walk.may_write():
            return
        # Per bot, its chats: both planners then look each one up by primary key, where
        # SQLite scans the table for a `(bot_id, chat_id) IN (VALUES …)`.
        by_bot: dict[int, list[int]] = defaultdict(list)
        for bot_id, chat_id in chats:
            by_bot[bot_id].append(chat_id)
        chosen = or_(
            *(
                and_(windows.c.bot_id == bot_id, windows.c.chat_id.in_(chat_ids))
                for bot_id, chat_ids in by_bot.items()
            )
        )
        # Re-checked: a chat whose window reopened (or got an update) in between keeps it.
        async with walk.batch(windows.name, size) as (conn, deleted):
            ended = await conn.execute(delete(windows).where(chosen, condition))
            deleted[windows.name] = ended.rowcount
        # As for events: fewer than asked ends the walk, and so does a batch that all
        # reopened in between, left to the next round rather than read again at once.
        if len(chats) < size or deleted[windows.name] == 0:
            return
