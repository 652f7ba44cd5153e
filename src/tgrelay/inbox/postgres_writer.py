"""The intake's PostgreSQL transactions, on an asyncpg connection of the intake's own.

Why not SQLAlchemy: its per-row path cost the serving process ~174 µs of CPU per update on
bench/intake.py (~3× SQLite's). Here a batch is four round trips whatever its size, each
statement prepared once per connection and fed whole columns as arrays (`unnest`), which
asyncpg encodes in C:

1. BEGIN
2. one statement: the updates (`ON CONFLICT DO NOTHING`, in (bot_id, update_id) order), the
   created ones back with a job id each (`nextval`, in that order), their chats' `job_keys`
   rows locked and read, and the audit rows (a tally's row adds its count);
3. one statement: the jobs, each after its key's newest (queue/links.py, as every enqueuer),
   and the keys' rows moved on to them;
4. COMMIT

The keys' rows are taken with `INSERT … ON CONFLICT DO UPDATE` (a no-op update): it creates
a new key's row or locks an existing one *in its newest version*, even one committed after
the statement's snapshot, and returns it. So enqueuers of one key take turns as
queue/chains.py's do, and ids committed out of order still link in commit order. Locks are
taken in one order, (bot_id, update_id) for updates and then the keys sorted, the keys only
once every update is in (a sort sits between), so two processes never deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from tgrelay import audit
from tgrelay.db import asyncpg_connections, notifications
from tgrelay.inbox.models import IncomingUpdate
from tgrelay.queue import chains, links
from tgrelay.queue import store as job_store
from tgrelay.queue.models import JobState

UpdateKey = tuple[int, int]  # (bot_id, update_id)
APPLICATION_NAME = "tgrelay-intake"
# A batch waits this long for a new connection before it is refused (503: Telegram retries).
CONNECT_TIMEOUT_SECONDS = 10.0
# Tries of a batch while its connection is lost: the second on a new connection.
CONNECTION_ATTEMPTS = 2

log = structlog.get_logger(__name__)


class PostgresWriteError(Exception):
    """A batch's transaction failed or its connection is gone; nothing was acknowledged."""


_SEQUENCE = "pg_get_serial_sequence('jobs', 'id')"
_AUDIT_COLUMNS = ", ".join(audit.COLUMNS)
_AUDIT_TYPES = {
    "workspace_id": "text",
    "bot_id": "bigint",
    "action": "text",
    "actor": "text",
    "detail": "text",
    "remote_addr": "text",
    "created_at": "timestamptz",
    "count": "int",
    "aggregate_key": "text",
}
_AUDIT_ARRAYS = ", ".join(
    f"${10 + i}::{_AUDIT_TYPES[column]}[]" for i, column in enumerate(audit.COLUMNS)
)

# Rows of two shapes: a created update (id set, with its job's id), or a key's row as locked.
_STORE_UPDATES = f"""
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                         $6::text[], $7::timestamptz[], $8::text[], $9::text[])
        AS t(bot_id, update_id, kind, chat_id, source, payload, received_at, trace_id,
             ordering_key)
), new AS (
    INSERT INTO updates (bot_id, update_id, kind, chat_id, source, payload, received_at,
                         trace_id)
    SELECT bot_id, update_id, kind, chat_id, source, payload, received_at, trace_id
    FROM input ORDER BY bot_id, update_id
    ON CONFLICT (bot_id, update_id) DO NOTHING
    RETURNING id, bot_id, update_id
), created AS MATERIALIZED (
    SELECT new.id, new.bot_id, new.update_id, input.ordering_key
    FROM new JOIN input USING (bot_id, update_id)
), locked AS (
    INSERT INTO job_keys (ordering_key, last_job_id)
    SELECT DISTINCT ordering_key, 0 FROM created
    WHERE ordering_key IS NOT NULL ORDER BY ordering_key
    ON CONFLICT (ordering_key) DO UPDATE SET last_job_id = job_keys.last_job_id
    RETURNING ordering_key, last_job_id
), audited AS (
    INSERT INTO audit_log ({_AUDIT_COLUMNS})
    SELECT * FROM unnest({_AUDIT_ARRAYS})
    ON CONFLICT ({audit.AGGREGATE_KEY}) DO UPDATE
    SET {audit.COUNT_COLUMN} = audit_log.{audit.COUNT_COLUMN} + excluded.{audit.COUNT_COLUMN}
)
SELECT c.id, c.bot_id, c.update_id, nextval({_SEQUENCE}) AS job_id,
       NULL::text AS ordering_key, NULL::bigint AS last_job_id
FROM (SELECT * FROM created ORDER BY bot_id, update_id) AS c
UNION ALL
SELECT NULL, NULL, NULL, NULL, ordering_key, last_job_id FROM locked
"""  # noqa: S608 (constants only)

_ENQUEUE = """
WITH enqueued AS (
    INSERT INTO jobs (id, kind, queue, payload, ordering_key, after_id, subject_id, state,
                      attempts, max_attempts, run_at, created_at, trace_id)
    SELECT id, $9, $10, payload, ordering_key, after_id, subject_id, $11, 0, $12, $13, $13,
           trace_id
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[])
        AS t(id, payload, ordering_key, after_id, subject_id, trace_id)
)
UPDATE job_keys SET last_job_id = moved.last_job_id
FROM unnest($7::text[], $8::bigint[]) AS moved(ordering_key, last_job_id)
WHERE job_keys.ordering_key = moved.ordering_key
"""


class PostgresBatches:
    """One connection, opened on first use and again once it is lost; a batch at a time."""

    # Concurrent batches of one process could commit a chat's later update first.
    max_in_flight = 1

    def __init__(
        self, database_url: str, *, queue: str, kind: str, default_max_attempts: int
    ) -> None:
        self._connect_args = asyncpg_connections.connect_arguments(
            database_url, timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME
        )
        # What every job of the intake shares: bound once per batch, not once per job.
        self._job_constants = (kind, queue, JobState.PENDING.value, default_max_attempts)
        self._announcement = notifications.payload(queue)
        self._conn: asyncpg.Connection | None = None
        self._statements: _Statements | None = None

    async def write(
        self,
        unique: Mapping[UpdateKey, IncomingUpdate],
        traces: Mapping[UpdateKey, str],
        audits: Sequence[audit.Entry],
        *,
        now: datetime,
    ) -> set[UpdateKey]:
        """Store a batch in one transaction; the keys of the updates it created.

        A batch whose connection was lost (a server restart ends an idle one unseen) goes
        once more on a new one. That is safe even when the lost answer was COMMIT's: the
        updates are then found stored (not new), their jobs already with them.
        """
        for attempt in range(1, CONNECTION_ATTEMPTS + 1):
            try:
                return await self._write(unique, traces, audits, now)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                lost = self._conn is None or self._conn.is_closed()
                if not lost or attempt == CONNECTION_ATTEMPTS:
                    raise PostgresWriteError(f"{type(exc).__name__}: {exc}") from exc
                log.warning("intake.reconnecting", error=str(exc), batch=len(unique))
        raise AssertionError("unreachable")

    async def _write(
        self,
        unique: Mapping[UpdateKey, IncomingUpdate],
        traces: Mapping[UpdateKey, str],
        audits: Sequence[audit.Entry],
        now: datetime,
    ) -> set[UpdateKey]:
        conn, statements = await self._connected()
        async with conn.transaction():
            rows = await statements.store_updates.fetch(
                *_update_columns(unique, traces), *_audit_columns(audits)
            )
            created, newest = _created_and_newest(rows)
            if created:
                await statements.enqueue.fetch(
                    *_job_columns(created, newest, unique, traces), *self._job_constants, now
                )
                # Workers of other processes wake when it commits (db/notifications.py).
                await statements.announce.fetch(self._announcement)
        return {(bot_id, update_id) for _, bot_id, update_id, _ in created}

    async def close(self) -> None:
        conn, self._conn, self._statements = self._conn, None, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=5)

    async def _connected(self) -> tuple[asyncpg.Connection, _Statements]:
        if self._conn is not None and self._statements is not None and not self._conn.is_closed():
            return self._conn, self._statements
        self._conn = self._statements = None
        args, kwargs = self._connect_args
        conn = await asyncpg.connect(*args, **kwargs)
        try:
            statements = _Statements(
                store_updates=await conn.prepare(_STORE_UPDATES),
                enqueue=await conn.prepare(_ENQUEUE),
                announce=await conn.prepare(notifications.NOTIFY_SQL),
            )
        except BaseException:
            conn.terminate()
            raise
        self._conn, self._statements = conn, statements
        return conn, statements


@dataclass(frozen=True)
class _Statements:
    store_updates: asyncpg.PreparedStatement
    enqueue: asyncpg.PreparedStatement
    announce: asyncpg.PreparedStatement


# A created update: (row id, bot_id, update_id, its job's id), in (bot_id, update_id) order.
Created = tuple[int, int, int, int]


def _created_and_newest(rows: Sequence[asyncpg.Record]) -> tuple[list[Created], dict[str, int]]:
    """The created updates, and the newest job of each of their keys that has one."""
    created: list[Created] = []
    newest: dict[str, int] = {}
    for row_id, bot_id, update_id, job_id, key, last_job_id in rows:
        if row_id is not None:
            created.append((row_id, bot_id, update_id, job_id))
        elif last_job_id != chains.NO_JOB:
            newest[key] = last_job_id
    return created, newest


def _update_columns(
    unique: Mapping[UpdateKey, IncomingUpdate], traces: Mapping[UpdateKey, str]
) -> tuple[list[Any], ...]:
    updates = unique.values()
    return (
        [u.bot_id for u in updates],
        [u.update_id for u in updates],
        [u.kind for u in updates],
        [u.chat_id for u in updates],
        [u.source.value for u in updates],
        [u.payload for u in updates],
        [u.received_at for u in updates],
        list(traces.values()),
        [u.ordering_key for u in updates],
    )


def _audit_columns(entries: Sequence[audit.Entry]) -> list[list[Any]]:
    rows = [audit.values(entry) for entry in audit.merge(entries)]
    return [[row[column] for row in rows] for column in audit.COLUMNS]


def _job_columns(
    created: Sequence[Created],
    newest: Mapping[str, int],
    unique: Mapping[UpdateKey, IncomingUpdate],
    traces: Mapping[UpdateKey, str],
) -> tuple[list[Any], ...]:
    """The process_update job of each created update, after its key's newest job; then each
    key's newest job afterwards."""
    updates = [unique[(bot_id, update_id)] for _, bot_id, update_id, _ in created]
    ids = [job_id for *_, job_id in created]
    keys = [u.ordering_key for u in updates]
    after_ids, moved = links.link(ids, keys, newest)
    return (
        ids,
        [job_store.encode_payload(u.job_payload()) for u in updates],
        keys,
        after_ids,
        [row_id for row_id, *_ in created],
        [traces[(u.bot_id, u.update_id)] for u in updates],
        list(moved),
        list(moved.values()),
    )
