"""Group commit: one task commits every update that queued while the previous commit ran.

Each caller waits for the commit that holds its update, so a 2xx (or a polling offset move)
always follows durable storage, while the cost of a commit is shared by a whole batch. An
update and its process_update job are written in the same transaction (DESIGN promise 1).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import SQLAlchemyError

from tgrelay import audit, errors
from tgrelay.db import dialects, tables
from tgrelay.db.sqlite_thread import SqliteThread, prepare_insert
from tgrelay.inbox.models import IncomingUpdate
from tgrelay.queue import store as job_store
from tgrelay.queue.models import NewJob
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)

PROCESS_UPDATE = "process_update"
# Bounded so one commit stays short and SQLite's 32k bound-parameter limit is never reached.
MAX_BATCH = 1000
UPDATE_COLUMNS = ("bot_id", "update_id", "kind", "chat_id", "source", "payload", "received_at")

UpdateKey = tuple[int, int]  # (bot_id, update_id)


class GroupCommitWriter:
    """The single writer of incoming updates (and intake audit rows) for this process."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._batches: _SqliteBatches | _SqlAlchemyBatches = (
            _SqliteBatches(rt) if rt.db.is_sqlite else _SqlAlchemyBatches(rt)
        )
        self._pending: list[tuple[IncomingUpdate, asyncio.Future[bool]]] = []
        self._audits: list[audit.Entry] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()

    async def store(self, update: IncomingUpdate) -> bool:
        """Commit an update and its job; True if new, False if already stored (duplicate)."""
        if self._stopping:
            raise errors.StorageUnavailable("the intake is shutting down")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((update, future))
        self._wakeup.set()
        return await future

    async def store_many(self, updates: Sequence[IncomingUpdate]) -> list[bool]:
        if self._stopping:
            raise errors.StorageUnavailable("the intake is shutting down")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in updates]
        self._pending.extend(zip(updates, futures, strict=True))
        self._wakeup.set()
        return list(await asyncio.gather(*futures))

    def record_audit(self, entry: audit.Entry) -> None:
        """Queue an audit row for the next commit (rejected requests are not waited on)."""
        self._audits.append(entry)
        self._wakeup.set()

    async def run(self) -> None:
        try:
            while not (self._stopping and not self._pending and not self._audits):
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending or self._audits:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                    audits, self._audits = self._audits, []
                    await self._commit(batch, audits)
        finally:
            await self._batches.close()
            self._stopped.set()

    async def stop(self) -> None:
        """Commit what is queued, then stop taking updates."""
        self._stopping = True
        self._wakeup.set()
        await self._stopped.wait()

    async def _commit(
        self, batch: list[tuple[IncomingUpdate, asyncio.Future[bool]]], audits: list[audit.Entry]
    ) -> None:
        # Duplicates inside one batch (a re-push racing the original) keep the first copy.
        unique: dict[UpdateKey, IncomingUpdate] = {}
        for update, _ in batch:
            unique.setdefault((update.bot_id, update.update_id), update)
        try:
            created = await self._batches.write(unique, audits)
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
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
            self._rt.notify_worker()


def _jobs_for(
    created: list[tuple[int, int, int]], unique: dict[UpdateKey, IncomingUpdate]
) -> list[NewJob]:
    """A process_update job per created (row id, bot_id, update_id), in update order."""
    return [
        NewJob(
            kind=PROCESS_UPDATE,
            payload={"bot_id": bot_id, "update_id": update_id},
            ordering_key=unique[(bot_id, update_id)].ordering_key,
            subject_id=row_id,
        )
        for row_id, bot_id, update_id in sorted(created, key=lambda row: (row[1], row[2]))
    ]


def _update_values(update: IncomingUpdate) -> dict[str, object]:
    return {
        "bot_id": update.bot_id,
        "update_id": update.update_id,
        "kind": update.kind,
        "chat_id": update.chat_id,
        "source": update.source.value,
        "payload": update.payload,
        "received_at": update.received_at,
    }


class _SqlAlchemyBatches:
    """PostgreSQL (or any async SQLAlchemy database): INSERT … ON CONFLICT DO NOTHING RETURNING."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    async def write(
        self, unique: dict[UpdateKey, IncomingUpdate], audits: list[audit.Entry]
    ) -> set[UpdateKey]:
        rt = self._rt
        updates = tables.updates
        async with rt.db.transaction() as conn:
            created: list[tuple[int, int, int]] = []
            if unique:
                statement = (
                    dialects.upsert(rt.db.dialect, updates)
                    .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
                    .returning(updates.c.id, updates.c.bot_id, updates.c.update_id)
                )
                rows = await conn.execute(statement, [_update_values(u) for u in unique.values()])
                created = [(r.id, r.bot_id, r.update_id) for r in rows]
                await job_store.enqueue(
                    conn,
                    _jobs_for(created, unique),
                    now=rt.clock(),
                    default_max_attempts=rt.settings.job_max_attempts,
                )
            await audit.record_many(conn, audits)
        return {(bot_id, update_id) for _, bot_id, update_id in created}

    async def close(self) -> None:
        return None


class _SqliteBatches:
    """SQLite: the whole batch in one call on a dedicated writer thread (see db.sqlite_thread).

    BEGIN IMMEDIATE makes this connection the only writer for the transaction, so the rows
    with ids above the pre-insert maximum are exactly the ones this batch created.
    """

    _INSERT_UPDATES = prepare_insert(
        tables.updates, UPDATE_COLUMNS, ignore_conflicts_on=("bot_id", "update_id")
    )
    _INSERT_JOBS = prepare_insert(tables.jobs, job_store.JOB_COLUMNS)
    _INSERT_AUDIT = prepare_insert(tables.audit_log, audit.COLUMNS)
    _MAX_ID = "SELECT coalesce(max(id), 0) FROM updates"
    _CREATED = "SELECT id, bot_id, update_id FROM updates WHERE id > ? ORDER BY id"

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._thread = SqliteThread(
            rt.settings.resolved_database_url, synchronous=rt.settings.sqlite_synchronous
        )

    async def write(
        self, unique: dict[UpdateKey, IncomingUpdate], audits: list[audit.Entry]
    ) -> set[UpdateKey]:
        now = self._rt.clock()
        max_attempts = self._rt.settings.job_max_attempts

        def work(conn: sqlite3.Connection) -> set[UpdateKey]:
            created: list[tuple[int, int, int]] = []
            if unique:
                (before,) = conn.execute(self._MAX_ID).fetchone()
                conn.executemany(
                    self._INSERT_UPDATES.sql,
                    self._INSERT_UPDATES.params(_update_values(u) for u in unique.values()),
                )
                created = conn.execute(self._CREATED, (before,)).fetchall()
                job_rows = [
                    job_store.job_values(job, now=now, default_max_attempts=max_attempts)
                    for job in _jobs_for(created, unique)
                ]
                conn.executemany(self._INSERT_JOBS.sql, self._INSERT_JOBS.params(job_rows))
            if audits:
                conn.executemany(
                    self._INSERT_AUDIT.sql, self._INSERT_AUDIT.params(map(audit.values, audits))
                )
            return {(bot_id, update_id) for _, bot_id, update_id in created}

        return await self._thread.transaction(work)

    async def close(self) -> None:
        await self._thread.close()
