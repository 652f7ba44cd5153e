"""Deleting finished rows past their age, a batch per short write transaction.

Each table is walked in the order its rows were written: by id where ids grow with time
(updates, jobs, deliveries, audit rows), by `(workspace_id, created_at)` for events, whose
ids are random. The window of the next `batch_size` candidates is read without the write
lock; the write transaction then deletes, by primary key, those that still meet every
condition (re-checked there, so a job claimed or a delivery replayed in between is kept).
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    cast,
    delete,
    exists,
    literal,
    or_,
    select,
    true,
)

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.events.models import DeliveryStatus
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.queue.models import JobState
from tgrelay.retention.policy import Kind, Policy, cutoffs, windows_cutoff

log = structlog.get_logger(__name__)

# Rows per write transaction, from `bench/retention.py batches` (SQLite, synchronous=FULL,
# 20,000 old updates each with its job, a delivered event and an attempt; three runs on the
# shared 2-core machine): 500 rows held the write lock 2–9 ms at p50 and at most 10–17 ms,
# whatever the table; 1,000 at most 12–24 ms; 2,000 at most 26–52 ms, the whole ~50 ms
# budget. 500 leaves room for a slower disk, and the intake's commits wait little behind one.
BATCH_SIZE = 500
# Pause between two batches, so writers of other processes (the intake's SQLite writer) get
# the lock in between: a batch holds it for at most about a third of the time.
PAUSE_SECONDS = 0.02

FINISHED_DELIVERY = (DeliveryStatus.DELIVERED.value, DeliveryStatus.DEAD_LETTER.value)
UNFINISHED_JOB = (JobState.PENDING.value, JobState.RUNNING.value)


@dataclass(frozen=True, kw_only=True)
class Batch:
    """One write transaction of a round, as observed (logs, tests, bench/retention.py)."""

    table: str  # the table walked
    deleted: Mapping[str, int]  # rows deleted per table (a delivery takes its attempts along)
    seconds: float  # wall time inside the write transaction, commit included


# Awaited between two batches; False ends the round (the runner's lease was lost).
Between = Callable[[], Awaitable[bool]]
Observe = Callable[[Batch], None]


async def _always() -> bool:
    return True


def _ignore(_: Batch) -> None:
    return None


@dataclass(kw_only=True)
class _Walk:
    db: Database
    batch_size: int
    between: Between
    observe: Observe
    deleted: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    stopped: bool = False  # `between` said no: the round ends

    async def may_write(self) -> bool:
        """Before each write transaction but the first, wait `between` and heed its answer."""
        if not self.stopped and self.batches and not await self.between():
            self.stopped = True
        return not self.stopped

    def record(self, batch: Batch) -> None:
        self.batches += 1
        self.deleted.update(batch.deleted)
        self.observe(batch)

    async def delete(self, table: Table, where: ColumnElement[bool]) -> int:
        """One write transaction deleting `table`'s rows that match `where`, recorded as a
        batch; how many went."""
        started = time.perf_counter()
        async with self.db.transaction() as conn:
            deleted = (await conn.execute(delete(table).where(where))).rowcount
        self.record(
            Batch(
                table=table.name,
                deleted={table.name: deleted},
                seconds=time.perf_counter() - started,
            )
        )
        return deleted


async def prune(
    db: Database,
    policy: Policy,
    *,
    now: datetime,
    batch_size: int = BATCH_SIZE,
    between: Between = _always,
    observe: Observe = _ignore,
) -> dict[str, int]:
    """One round: delete every finished row past its age, and every ended chat window, at
    `now`. Returns rows per table.

    Deliveries (with their attempts) go before events, as an event goes only once no
    delivery of it is left; `between` is awaited between any two batches.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cut = cutoffs(policy, now)
    walk = _Walk(db=db, batch_size=batch_size, between=between, observe=observe)
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
    finished = [
        and_(jobs.c.state == state.value, jobs.c.finished_at < cutoff)
        for state, cutoff in ((JobState.DONE, done_cutoff), (JobState.DEAD, dead_cutoff))
        if cutoff is not None
    ]
    # A job is created before it finishes, so one finished before its cutoff was born so too.
    walk_to = max(c for c in (done_cutoff, dead_cutoff) if c is not None)
    return _Sweep(table=jobs, born=jobs.c.created_at, cutoff=walk_to, finished=or_(*finished))


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


async def _by_id(walk: _Walk, sweep: _Sweep) -> None:
    id_ = sweep.table.c.id
    after: int | None = None
    while not walk.stopped:
        window = (
            select(id_, sweep.born, sweep.finished.label("finished"))
            .order_by(id_)
            .limit(walk.batch_size)
        )
        if after is not None:
            window = window.where(id_ > after)
        async with walk.db.engine.connect() as conn:  # a read: no write lock
            rows = (await conn.execute(window)).all()
        old = list(takewhile(lambda row: row[1] < sweep.cutoff, rows))
        # Old rows not finished yet (a pending job) cost this read, never a write transaction.
        doomed = [row.id for row in old if row.finished]
        if doomed and await walk.may_write():
            await _delete(walk, sweep, doomed)
        if len(old) < walk.batch_size:  # a young row, or the table's end
            return
        after = old[-1].id


async def _delete(walk: _Walk, sweep: _Sweep, ids: list[int]) -> None:
    table, id_ = sweep.table, sweep.table.c.id
    condition = and_(id_.in_(ids), sweep.born < sweep.cutoff, sweep.finished)
    deleted: dict[str, int] = {}
    started = time.perf_counter()
    async with walk.db.transaction() as conn:
        if not sweep.dependents:
            result = await conn.execute(delete(table).where(condition))
            deleted[table.name] = result.rowcount
        else:
            # FOR UPDATE (PostgreSQL) holds back a replay of these rows until they are gone.
            doomed = list(await conn.scalars(select(id_).where(condition).with_for_update()))
            for column in sweep.dependents:
                if doomed:
                    result = await conn.execute(delete(column.table).where(column.in_(doomed)))
                    deleted[column.table.name] = result.rowcount
            if doomed:
                await conn.execute(delete(table).where(id_.in_(doomed)))
            deleted[table.name] = len(doomed)
    walk.record(Batch(table=table.name, deleted=deleted, seconds=time.perf_counter() - started))


async def _events(walk: _Walk, cutoff: datetime) -> None:
    """Events past their age with no delivery left, walked per workspace by creation time."""
    events, deliveries = tables.events, tables.deliveries
    condition = and_(
        events.c.created_at < cutoff, ~exists().where(deliveries.c.event_id == events.c.id)
    )
    async with walk.db.engine.connect() as conn:
        workspace_ids = list(
            await conn.scalars(select(tables.workspaces.c.id).order_by(tables.workspaces.c.id))
        )
    for workspace_id in workspace_ids:
        while not walk.stopped:
            window = (
                select(events.c.id)
                .where(events.c.workspace_id == workspace_id, condition)
                .order_by(events.c.created_at)
                .limit(walk.batch_size)
            )
            async with walk.db.engine.connect() as conn:
                ids = list(await conn.scalars(window))
            if not ids or not await walk.may_write():
                break
            deleted = await walk.delete(events, and_(events.c.id.in_(ids), condition))
            # Fewer than asked: the workspace is done. None deleted: every one of them got a
            # delivery in between (a replay); leave them to the next round rather than loop.
            if len(ids) < walk.batch_size or deleted == 0:
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
        window = (
            select(windows.c.bot_id, windows.c.chat_id)
            .where(condition)
            .order_by(windows.c.started_at)
            .limit(walk.batch_size)
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
        deleted = await walk.delete(windows, and_(chosen, condition))
        # As for events: fewer than asked ends the walk, and so does a batch that all
        # reopened in between, left to the next round rather than read again at once.
        if len(chats) < walk.batch_size or deleted == 0:
            return
