"""The intake's PostgreSQL transactions, on an asyncpg connection of the intake's own.

Why not SQLAlchemy: its per-row path cost the serving process ~174 µs of CPU per update on
bench/intake.py (~3× SQLite's). Here a batch is one statement, prepared once per connection,
fed whole columns as arrays (`unnest`, which asyncpg encodes in C) and run outside an
explicit transaction, so PostgreSQL commits it before it answers: one round trip per batch,
where BEGIN, two statements, a NOTIFY and COMMIT took five (on a loaded two-core machine
each trivial round trip cost 0.25–0.5 ms, most of a batch's time). In that statement:

1. the updates (`ON CONFLICT DO NOTHING`, in (bot_id, update_id) order), the created ones
   given a job id each (`nextval`, in that order);
2. their chats' `job_keys` rows moved on to each chat's last new job with `INSERT … ON
   CONFLICT DO UPDATE`, which keeps the job it replaces in `previous_job_id` and returns it
   (PostgreSQL 15 returns only new values from an upsert);
3. the jobs, each after its key's newest: the job before it in the batch, or the first one
   after the key's previous newest (queue/links.py states the rule);
4. the audit rows (a tally's row adds its count), and a NOTIFY when jobs were created.

The upsert creates a new key's row or locks an existing one *in its newest version*, even
one committed after the statement's snapshot (a `SELECT … FOR UPDATE` would miss a row
another process created meanwhile). So enqueuers of one key take turns as queue/chains.py's
do, and ids committed out of order still link in commit order. Locks are taken in one
order, (bot_id, update_id) for updates and then the keys sorted, the keys only once every
update is in (they come from the created rows), so two processes never deadlock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from tgrelay import audit
from tgrelay.db import asyncpg_connections, notifications
from tgrelay.inbox.models import IncomingUpdate
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
_UPDATE_ARRAYS = 10  # $1…$10: _update_columns
_AUDIT_ARRAYS = ", ".join(
    f"${_UPDATE_ARRAYS + 1 + i}::{_AUDIT_TYPES[column]}[]" for i, column in enumerate(audit.COLUMNS)
)
# Then, one value each: kind, queue, state, max_attempts, now, the NOTIFY's payload.
_CONSTANTS = _UPDATE_ARRAYS + len(audit.COLUMNS)


def _constant(position: int) -> str:
    return f"${_CONSTANTS + position}"


_STORE_BATCH = f"""
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                         $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[])
        AS t(bot_id, update_id, kind, chat_id, source, payload, received_at, trace_id,
             ordering_key, job_payload)
), new AS (
    INSERT INTO updates (bot_id, update_id, kind, chat_id, source, payload, received_at,
                         trace_id)
    SELECT bot_id, update_id, kind, chat_id, source, payload, received_at, trace_id
    FROM input ORDER BY bot_id, update_id
    ON CONFLICT (bot_id, update_id) DO NOTHING
    RETURNING id, bot_id, update_id
), created AS MATERIALIZED (
    SELECT ordered.*, nextval({_SEQUENCE}) AS job_id
    FROM (
        SELECT new.id, new.bot_id, new.update_id, input.ordering_key, input.job_payload,
               input.trace_id
        FROM new JOIN input USING (bot_id, update_id)
        ORDER BY new.bot_id, new.update_id
    ) AS ordered
), moved AS (
    INSERT INTO job_keys (ordering_key, last_job_id, previous_job_id)
    SELECT ordering_key, max(job_id), 0 FROM created
    WHERE ordering_key IS NOT NULL GROUP BY ordering_key ORDER BY ordering_key
    ON CONFLICT (ordering_key) DO UPDATE
    SET previous_job_id = job_keys.last_job_id, last_job_id = excluded.last_job_id
    RETURNING ordering_key, nullif(previous_job_id, 0) AS previous_job_id
), enqueued AS (
    INSERT INTO jobs (id, kind, queue, payload, ordering_key, after_id, subject_id, state,
                      attempts, max_attempts, run_at, created_at, trace_id)
    SELECT created.job_id, {_constant(1)}, {_constant(2)}, created.job_payload,
           created.ordering_key,
           CASE WHEN created.ordering_key IS NOT NULL
                THEN coalesce(lag(created.job_id) OVER key_order, moved.previous_job_id)
           END,
           created.id, {_constant(3)}, 0, {_constant(4)}, {_constant(5)}, {_constant(5)},
           created.trace_id
    FROM created LEFT JOIN moved USING (ordering_key)
    WINDOW key_order AS (PARTITION BY created.ordering_key ORDER BY created.job_id)
), audited AS (
    INSERT INTO audit_log ({_AUDIT_COLUMNS})
    SELECT * FROM unnest({_AUDIT_ARRAYS})
    ON CONFLICT ({audit.AGGREGATE_KEY}) DO UPDATE
    SET {audit.COUNT_COLUMN} = audit_log.{audit.COUNT_COLUMN} + excluded.{audit.COUNT_COLUMN}
), announced AS (
    -- Workers of other processes wake when it commits (db/notifications.py).
    SELECT pg_notify('{notifications.CHANNEL}', {_constant(6)})
    FROM (SELECT FROM created LIMIT 1) AS any_created
)
SELECT created.bot_id, created.update_id FROM created, announced
"""  # noqa: S608 (constants only)


class PostgresBatches:
    """One connection, opened on first use and again once it is lost; a batch at a time.

    The intake writes on several of these (writer.POSTGRES_LANES), each chat's updates always
    on the same one.
    """

    # Concurrent batches of one lane could commit a chat's later update first.
    max_in_flight = 1

    def __init__(
        self, database_url: str, *, queue: str, kind: str, default_max_attempts: int
    ) -> None:
        self._connect_args = asyncpg_connections.connect_arguments(
            database_url, timeout=CONNECT_TIMEOUT_SECONDS, application_name=APPLICATION_NAME
        )
        # What every job of the intake shares: bound once per batch, not once per job.
        self._constants = (kind, queue, JobState.PENDING.value, default_max_attempts)
        self._announcement = notifications.payload(queue)
        self._conn: asyncpg.Connection | None = None
        self._store_batch: asyncpg.PreparedStatement | None = None

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
        once more on a new one. That is safe even when the lost answer was the commit's:
        the updates are then found stored (not new), their jobs already with them.
        """
        for attempt in range(1, CONNECTION_ATTEMPTS + 1):
            try:
                statement = await self._connected()
                rows = await statement.fetch(
                    *_update_columns(unique, traces),
                    *_audit_columns(audits),
                    *self._constants,
                    now,
                    self._announcement,
                )
                return {(bot_id, update_id) for bot_id, update_id in rows}
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                lost = self._conn is None or self._conn.is_closed()
                if not lost or attempt == CONNECTION_ATTEMPTS:
                    raise PostgresWriteError(f"{type(exc).__name__}: {exc}") from exc
                log.warning("intake.reconnecting", error=str(exc), batch=len(unique))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        conn, self._conn, self._store_batch = self._conn, None, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=5)

    async def _connected(self) -> asyncpg.PreparedStatement:
        if self._conn is not None and self._store_batch is not None and not self._conn.is_closed():
            return self._store_batch
        self._conn = self._store_batch = None
        args, kwargs = self._connect_args
        conn = await asyncpg.connect(*args, **kwargs)
        try:
            statement = await conn.prepare(_STORE_BATCH)
        except BaseException:
            conn.terminate()
            raise
        self._conn, self._store_batch = conn, statement
        return statement


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
        [job_store.encode_payload(u.job_payload()) for u in updates],
    )


def _audit_columns(entries: Sequence[audit.Entry]) -> list[list[Any]]:
    rows = [audit.values(entry) for entry in audit.merge(entries)]
    return [[row[column] for row in rows] for column in audit.COLUMNS]
