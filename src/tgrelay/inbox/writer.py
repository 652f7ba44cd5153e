"""Group commit: each transaction holds every update that queued while earlier ones ran
(in its lane: on PostgreSQL a process writes on POSTGRES_LANES connections, by chat).

Each caller waits for the commit that holds its update, so a 2xx (or a polling offset move)
always follows durable storage, while the cost of a commit is shared by a whole batch. An
update and its process_update job are written in the same transaction (DESIGN promise 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy.engine import make_url

from tgrelay import audit, errors, tracing
from tgrelay.db import tables
from tgrelay.db.sqlite_inserts import PreparedInsert, prepare_insert
from tgrelay.inbox.models import PROCESS_UPDATE, IncomingUpdate
from tgrelay.inbox.postgres_writer import PostgresBatches, PostgresWriteError
from tgrelay.inbox.sqlite_transactions import (
    InsertSql,
    Row,
    UpdateKey,
    WriterConfig,
    WriteRequest,
)
from tgrelay.inbox.sqlite_writer import SqliteWriterProcess, WriterProcessError
from tgrelay.queue import store as job_store
from tgrelay.queue.models import NewJob
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)

UPDATES_QUEUE = "updates"  # process_update's own queue, drained by a batching worker
# Bounded so one commit stays short and SQLite's 32k bound-parameter limit is never reached.
MAX_BATCH = 1000
# PostgreSQL's intake connections per process: each lane's batch runs on a server backend of
# its own while the others' do. Chats never share a lane, so neither do locks.
POSTGRES_LANES = 2
UPDATE_COLUMNS = (
    "bot_id",
    "update_id",
    "kind",
    "chat_id",
    "source",
    "payload",
    "received_at",
    "trace_id",
)


Queued = tuple[IncomingUpdate, "asyncio.Future[bool]"]  # an update and its caller's answer


class _Lane:
    """A stream of batches committed in the order they were formed: the SQLite writer process
    runs its lane's batches one after another, a PostgreSQL lane has one batch in flight. A
    chat's updates all take one lane, so they commit in their order of arrival."""

    def __init__(self, batches: _SqliteBatches | PostgresBatches) -> None:
        self.batches = batches
        self.pending: list[Queued] = []
        self.audits: list[audit.Entry] = []
        self.wakeup = asyncio.Event()

    def queue(self, update: IncomingUpdate, future: asyncio.Future[bool]) -> None:
        self.pending.append((update, future))
        self.wakeup.set()


def lane_index(bot_id: int, chat_id: int | None, lanes: int) -> int:
    """The lane of a chat's updates: always the same one, so is every copy of an update."""
    return hash((bot_id, chat_id or 0)) % lanes


def _lane_batches(rt: Runtime) -> list[_SqliteBatches | PostgresBatches]:
    """SQLite: one lane (the database has one writer at a time anyway). PostgreSQL:
    POSTGRES_LANES connections, whose batches run side by side on the server."""
    if rt.db.is_sqlite:
        return [_SqliteBatches(rt)]
    return [
        PostgresBatches(
            rt.settings.resolved_database_url,
            queue=UPDATES_QUEUE,
            kind=PROCESS_UPDATE,
            default_max_attempts=rt.settings.job_max_attempts,
        )
        for _ in range(POSTGRES_LANES)
    ]


class GroupCommitWriter:
    """The single writer of incoming updates (and intake audit rows) for this process."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._lanes = [_Lane(batches) for batches in _lane_batches(rt)]
        # Made on the loop it serves; kept, as asking for the running loop costs a getpid()
        # call per request on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self.arrived = 0  # updates handed to store() since start: arrivals, for pacing others
        self._stopping = False
        self._stopped = asyncio.Event()

    async def store(self, update: IncomingUpdate) -> bool:
        """Commit an update and its job; True if new, False if already stored (duplicate)."""
        if self._stopping:
            raise errors.StorageUnavailable("the intake is shutting down")
        future: asyncio.Future[bool] = self._loop.create_future()
        self.arrived += 1
        self._lane_of(update).queue(update, future)
        return await future

    async def store_many(self, updates: Sequence[IncomingUpdate]) -> list[bool]:
        if self._stopping:
            raise errors.StorageUnavailable("the intake is shutting down")
        futures = [self._loop.create_future() for _ in updates]
        self.arrived += len(updates)
        for update, future in zip(updates, futures, strict=True):
            self._lane_of(update).queue(update, future)
        return list(await asyncio.gather(*futures))

    def record_audit(self, entry: audit.Entry) -> None:
        """Queue an audit row for the next commit (rejected requests are not waited on)."""
        self.record_audits([entry])

    def record_audits(self, entries: Sequence[audit.Entry]) -> None:
        """`record_audit` for several rows (a flush of the intake's rejection tally).

        They all go the first lane's way: two lanes adding to one tally row at once would
        wait for each other.
        """
        lane = self._lanes[0]
        lane.audits.extend(entries)
        lane.wakeup.set()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._run_lane(lane) for lane in self._lanes))
        finally:
            for lane in self._lanes:
                await lane.batches.close()
            self._stopped.set()

    async def stop(self) -> None:
        """Commit what is queued, then stop taking updates."""
        self._stopping = True
        for lane in self._lanes:
            lane.wakeup.set()
        await self._stopped.wait()

    def _lane_of(self, update: IncomingUpdate) -> _Lane:
        return self._lanes[lane_index(update.bot_id, update.chat_id, len(self._lanes))]

    async def _run_lane(self, lane: _Lane) -> None:
        in_flight: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(lane.batches.max_in_flight)

        async def commit(batch: list[Queued], audits: list[audit.Entry]) -> None:
            try:
                await self._commit(lane, batch, audits)
            finally:
                slots.release()

        while not (self._stopping and not lane.pending and not lane.audits):
            await lane.wakeup.wait()
            lane.wakeup.clear()
            while lane.pending or lane.audits:
                await slots.acquire()
                batch = lane.pending[:MAX_BATCH]
                del lane.pending[:MAX_BATCH]
                audits, lane.audits = lane.audits, []
                task = asyncio.create_task(commit(batch, audits))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)

    async def _commit(self, lane: _Lane, batch: list[Queued], audits: list[audit.Entry]) -> None:
        # Duplicates inside one batch (a re-push racing the original) keep the first copy.
        unique: dict[UpdateKey, IncomingUpdate] = {}
        for update, _ in batch:
            unique.setdefault((update.bot_id, update.update_id), update)
        # Each update's trace starts here, as it is stored (tgrelay.tracing).
        traces = dict(zip(unique, tracing.new_trace_ids(len(unique)), strict=True))
        try:
            created = await lane.batches.write(unique, traces, audits, now=self._rt.clock())
        except (PostgresWriteError, WriterProcessError, OSError) as exc:
            log.error("intake.commit_failed", error=str(exc), batch=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(errors.StorageUnavailable())
            return
        for update, future in batch:
            key = (update.bot_id, update.update_id)
            if not future.done():
                # Only the copy that was written counts as new.
                future.set_result(key in created and unique[key] is update)
        if created:
            self._rt.notify_queue(UPDATES_QUEUE)
            if self._rt.tracer.enabled:
                _trace_stored(self._rt, [(unique[key], traces[key]) for key in created])


def _trace_stored(rt: Runtime, updates: Sequence[tuple[IncomingUpdate, str]]) -> None:
    """Each update's root span: from its arrival to the commit that stored it."""
    committed = rt.clock()
    for update, trace_id in updates:
        rt.tracer.record(
            "update.stored",
            trace_id=trace_id,
            start=update.received_at,
            end=committed,
            attributes={
                "bot_id": update.bot_id,
                "update_id": update.update_id,
                "source": update.source.value,
            },
            root=True,
        )


def _job_for(update: IncomingUpdate, subject_id: int | None, trace_id: str) -> NewJob:
    """The process_update job of a created update row (`subject_id` is the row's id)."""
    return NewJob(
        kind=PROCESS_UPDATE,
        queue=UPDATES_QUEUE,
        payload=update.job_payload(),
        ordering_key=update.ordering_key,
        subject_id=subject_id,
        trace_id=trace_id,
    )


def _update_values(update: IncomingUpdate, trace_id: str) -> dict[str, object]:
    return {
        "bot_id": update.bot_id,
        "update_id": update.update_id,
        "kind": update.kind,
        "chat_id": update.chat_id,
        "source": update.source.value,
        "payload": update.payload,
        "received_at": update.received_at,
        "trace_id": trace_id,
    }


_INSERT_UPDATES = prepare_insert(
    tables.updates, UPDATE_COLUMNS, ignore_conflicts_on=("bot_id", "update_id")
)
_INSERT_JOBS = prepare_insert(tables.jobs, job_store.JOB_COLUMNS)
_INSERT_AUDIT = prepare_insert(
    tables.audit_log, audit.COLUMNS, add_on_conflict=(audit.AGGREGATE_KEY, audit.COUNT_COLUMN)
)
_UPSERT_JOB_KEYS = prepare_insert(
    tables.job_keys, ("ordering_key", "last_job_id"), replace_conflicts_on=("ordering_key",)
)


class _SqliteBatches:
    """SQLite: each batch is one transaction in the writer process (see inbox.sqlite_writer).

    BEGIN IMMEDIATE makes the process the only writer for the transaction, so the rows with
    ids above the pre-insert maximum are exactly the ones the batch created.
    """

    # A second batch waits in the writer process's pipe while the first commits; the process
    # runs them in order, so a later batch's copy of an update is the duplicate.
    max_in_flight = 2

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        database = make_url(rt.settings.resolved_database_url).database
        if not database:
            raise ValueError("the SQLite intake writer needs a database file")
        self._process = SqliteWriterProcess(
            writer_config(database, synchronous=rt.settings.sqlite_synchronous),
            on_lock_held=rt.metrics.sqlite_write_lock.labels("intake").observe,
        )

    async def write(
        self,
        unique: dict[UpdateKey, IncomingUpdate],
        traces: dict[UpdateKey, str],
        audits: list[audit.Entry],
        *,
        now: datetime,
    ) -> set[UpdateKey]:
        request = write_request(
            list(unique.values()),
            audits,
            now=now,
            default_max_attempts=self._rt.settings.job_max_attempts,
            trace_ids=list(traces.values()),
        )
        return await self._process.write(request)

    async def close(self) -> None:
        await self._process.close()


def writer_config(path: str, *, synchronous: str) -> WriterConfig:
    """What the SQLite writer process needs to store this module's batches in `path`."""
    updates, jobs = _INSERT_UPDATES, _INSERT_JOBS
    return WriterConfig(
        path=path,
        synchronous=synchronous,
        insert_updates=_insert_sql(updates),
        insert_jobs=_insert_sql(jobs),
        insert_audits=_insert_sql(_INSERT_AUDIT),
        upsert_job_keys=_insert_sql(_UPSERT_JOB_KEYS),
        max_update_id="SELECT coalesce(max(id), 0) FROM updates",
        # As queue.store.enqueue: ids taken before the INSERT, to link each job to its
        # key's newest (queue/links.py).
        max_job_id="SELECT coalesce(max(id), 0) FROM jobs",
        newest_jobs="SELECT ordering_key, last_job_id FROM job_keys WHERE ordering_key IN ",
        # A range of the rowid: ordering by (bot_id, update_id) here made SQLite walk that
        # whole unique index.
        created_updates="SELECT id, bot_id, update_id FROM updates WHERE id > ?",
        update_key_columns=(updates.columns.index("bot_id"), updates.columns.index("update_id")),
        job_subject_column=jobs.columns.index("subject_id"),
        job_id_column=jobs.columns.index("id"),
        job_after_column=jobs.columns.index("after_id"),
        job_key_column=jobs.columns.index("ordering_key"),
    )


def write_request(
    updates: Sequence[IncomingUpdate],
    audits: Sequence[audit.Entry],
    *,
    now: datetime,
    default_max_attempts: int,
    trace_ids: Sequence[str] | None = None,
) -> WriteRequest:
    """The writer process's request for a batch: rows ready to bind, a job per update, each
    update and its job with the update's trace id (`trace_ids[i]`; new ones when None)."""
    traces = tracing.new_trace_ids(len(updates)) if trace_ids is None else trace_ids
    return WriteRequest(
        updates=_INSERT_UPDATES.params(map(_update_values, updates, traces)),
        jobs=_job_rows(updates, traces, now=now, default_max_attempts=default_max_attempts),
        audits=_INSERT_AUDIT.params(map(audit.values, audit.merge(audits))),
    )


# Where the values that differ between a batch's jobs sit in a job row.
_JOB_PAYLOAD = _INSERT_JOBS.columns.index("payload")
_JOB_ORDERING_KEY = _INSERT_JOBS.columns.index("ordering_key")
_JOB_TRACE_ID = _INSERT_JOBS.columns.index("trace_id")


def _job_rows(
    updates: Sequence[IncomingUpdate],
    trace_ids: Sequence[str],
    *,
    now: datetime,
    default_max_attempts: int,
) -> list[Row]:
    """The process_update job row of each update, its subject_id left to the writer process.

    A batch's jobs differ only in payload, ordering key and trace id: the first row is built
    the general way, the others are copies of it with those three replaced, which costs a
    third as much on the intake's hot path.
    """
    if not updates:
        return []
    first = job_store.job_values(
        _job_for(updates[0], None, trace_ids[0]),
        now=now,
        default_max_attempts=default_max_attempts,
    )
    template = _INSERT_JOBS.params([first])[0]
    rows = []
    for update, trace_id in zip(updates, trace_ids, strict=True):
        row = template.copy()
        row[_JOB_PAYLOAD] = job_store.encode_payload(update.job_payload())
        row[_JOB_ORDERING_KEY] = update.ordering_key
        row[_JOB_TRACE_ID] = trace_id
        rows.append(row)
    return rows


def _insert_sql(insert: PreparedInsert) -> InsertSql:
    return InsertSql(head=insert.head, group=insert.group, tail=insert.tail)
