"""Group commit: one task commits every update that queued while the previous commit ran.

Each caller waits for the commit that holds its update, so a 2xx (or a polling offset move)
always follows durable storage, while the cost of a commit is shared by a whole batch. An
update and its process_update job are written in the same transaction (DESIGN promise 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from tgrelay import audit, errors
from tgrelay.db import dialects, tables
from tgrelay.inbox.models import IncomingUpdate
from tgrelay.queue import store as job_store
from tgrelay.queue.models import NewJob
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)

PROCESS_UPDATE = "process_update"
# Bounded so one commit stays short and SQLite's 32k bound-parameter limit is never reached.
MAX_BATCH = 1000


class GroupCommitWriter:
    """The single writer of incoming updates (and intake audit rows) for this process."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._pending: list[tuple[IncomingUpdate, asyncio.Future[bool]]] = []
        self._audits: list[audit.Entry] = []
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()

    async def store(self, update: IncomingUpdate) -> bool:
        """Commit an update and its job; True if new, False if already stored (duplicate)."""
        return (await self.store_many([update]))[0]

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
            self._stopped.set()

    async def stop(self) -> None:
        """Commit what is queued, then stop taking updates."""
        self._stopping = True
        self._wakeup.set()
        await self._stopped.wait()

    async def _commit(
        self, batch: list[tuple[IncomingUpdate, asyncio.Future[bool]]], audits: list[audit.Entry]
    ) -> None:
        try:
            created = await self._write([u for u, _ in batch], audits)
        except (SQLAlchemyError, DBAPIError, OSError) as exc:
            log.error("intake.commit_failed", error=str(exc), batch=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(errors.StorageUnavailable())
            return
        for update, future in batch:
            if not future.done():
                future.set_result((update.bot_id, update.update_id) in created)
        if created:
            self._rt.notify_worker()

    async def _write(
        self, updates: list[IncomingUpdate], audits: list[audit.Entry]
    ) -> set[tuple[int, int]]:
        """Insert new updates and their jobs; return the (bot_id, update_id) pairs created."""
        rt = self._rt
        unique = {(u.bot_id, u.update_id): u for u in reversed(updates)}  # first copy wins
        async with rt.db.transaction() as conn:
            created: set[tuple[int, int]] = set()
            if unique:
                statement = (
                    dialects.upsert(rt.db.dialect, tables.updates)
                    .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
                    .returning(
                        tables.updates.c.id, tables.updates.c.bot_id, tables.updates.c.update_id
                    )
                )
                rows = await conn.execute(
                    statement,
                    [
                        {
                            "bot_id": u.bot_id,
                            "update_id": u.update_id,
                            "kind": u.kind,
                            "chat_id": u.chat_id,
                            "source": u.source.value,
                            "payload": u.payload,
                            "received_at": u.received_at,
                        }
                        for u in unique.values()
                    ],
                )
                jobs: list[NewJob] = []
                for row_id, bot_id, update_id in rows.all():
                    update = unique[(bot_id, update_id)]
                    created.add((bot_id, update_id))
                    jobs.append(
                        NewJob(
                            kind=PROCESS_UPDATE,
                            payload={"bot_id": bot_id, "update_id": update_id},
                            ordering_key=update.ordering_key,
                            subject_id=row_id,
                        )
                    )
                # Jobs in update order, so a chat's updates queue oldest first.
                jobs.sort(key=lambda job: (job.payload["bot_id"], job.payload["update_id"]))
                await job_store.enqueue(
                    conn,
                    jobs,
                    now=rt.clock(),
                    default_max_attempts=rt.settings.job_max_attempts,
                )
            await audit.record_many(conn, audits)
        return created
