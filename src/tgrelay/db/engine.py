"""The database handle: one async engine per process, opened and closed by the app's lifespan."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tgrelay.db import aiosqlite_one_hop, sqlite_users, write_turns

log = structlog.get_logger(__name__)

# Execution option that marks a connection's transaction as a writer (SQLite: IMMEDIATE).
_WRITE = "tgrelay_write"
# Where a transaction's connection keeps what to call once it commits (`after_commit`).
_AFTER_COMMIT = "tgrelay_after_commit"
# PostgreSQL connections opened beyond the pool when all its connections are in use, each
# closed again when returned: past the pool, every checkout pays for a new connection.
POSTGRES_MAX_OVERFLOW = 10
# A pooled PostgreSQL connection idle this long is pinged before use, so a server restart or
# an idle connection dropped by the network meets a fresh connection, not a request. Ones in
# steady use skip the round trip: pinging every checkout cost a send job five per run.
POSTGRES_PING_AFTER_IDLE_SECONDS = 5.0
# Who holds SQLite's write lock, as `on_write_lock_held` is told: a worker names its queue,
# the pruner "retention" (`writing_as`); the API's and everything else's transactions keep
# the default.
_WRITER: ContextVar[str] = ContextVar("tgrelay_sqlite_writer", default="transactions")


@contextmanager
def writing_as(name: str) -> Iterator[None]:
    """Within the block, the write transactions of this task, and of the tasks it starts,
    are `name`'s for the write-lock metric (`Database.on_write_lock_held`)."""
    token = _WRITER.set(name)
    try:
        yield
    finally:
        _WRITER.reset(token)


class Database:
    """An async SQLAlchemy engine plus the per-dialect settings tgrelay relies on."""

    def __init__(
        self, url: str, *, sqlite_synchronous: str = "NORMAL", postgres_pool_size: int = 16
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self._in_use: weakref.finalize[[int], Database] | None = None
        if self.is_sqlite and parsed.database not in (None, "", ":memory:"):
            # The database holds encrypted tokens and the audit trail: owner only.
            path = Path(parsed.database)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Shows `tgrelay restore` that this process uses the file, until disposed;
            # first, so that no file is created while a restore replaces it.
            self._in_use = weakref.finalize(self, os.close, sqlite_users.hold(path))
            # SQLite gives its -wal and -shm files the mode of the database file.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        self.engine: AsyncEngine = create_async_engine(
            url, **_engine_options(parsed.drivername, postgres_pool_size)
        )
        self._sqlite_writers = write_turns.WriteTurns()
        # Told which writer (`writing_as`) held the write lock and for how long, once per
        # committed SQLite write transaction of this process (the runtime sets it to a
        # metric): the lock's busy share is where SQLite's limit shows, and its long holds
        # are what the intake's acks wait behind.
        self.on_write_lock_held: Callable[[str, float], None] | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine, sqlite_synchronous)
        else:
            _ping_idle_connections(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed on success, rolled back on error.

        Reads go through `engine.connect()` instead. On SQLite, this process's writers queue
        for their turn (`write_turns`) rather than on SQLite's busy handler, whose growing
        sleeps made waits long and unfair; never open a transaction inside another one.
        On PostgreSQL, connections are in autocommit until this switches one to READ
        COMMITTED for the transaction (the pool switches it back).
        """
        if not self.is_sqlite:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="READ COMMITTED")
                async with _calling_after_commit(conn), conn.begin():
                    yield conn
            return
        async with self._sqlite_writers.turn(), self.engine.connect() as conn:
            await conn.execution_options(**{_WRITE: True})
            async with _calling_after_commit(conn):
                async with conn.begin():  # BEGIN IMMEDIATE: the lock is this process's now
                    locked_at = time.monotonic()
                    yield conn
                if self.on_write_lock_held is not None:
                    self.on_write_lock_held(_WRITER.get(), time.monotonic() - locked_at)

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as exc:
            log.warning("db.unreachable", error=str(exc))
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._in_use is not None:
            self._in_use()  # runs once: closing the descriptor releases the lock


def after_commit(conn: AsyncConnection, callback: Callable[[], None]) -> None:
    """Call `callback` once the `Database.transaction()` that `conn` belongs to has committed;
    never if it rolls back. E.g. waking a worker for the jobs the transaction wrote."""
    conn.info.setdefault(_AFTER_COMMIT, []).append(callback)


@asynccontextmanager
async def _calling_after_commit(conn: AsyncConnection) -> AsyncIterator[None]:
    """Around `conn.begin()`: runs the callbacks registered in the block once it committed."""
    # `info` outlives the checkout (it belongs to the pooled connection): start empty.
    callbacks: list[Callable[[], None]] = []
    conn.info[_AFTER_COMMIT] = callbacks
    # A failure leaves `conn.info` alone: on a connection invalidated by it (the server went
    # away), reading it reconnects outside SQLAlchemy's greenlet and raises MissingGreenlet
    # in place of the real error. The callbacks never run, and the next transaction on the
    # connection replaces the list.
    yield
    del conn.info[_AFTER_COMMIT]
    for callback in callbacks:
        callback()


def _engine_options(drivername: str, postgres_pool_size: int) -> dict[str, Any]:
    if drivername.startswith("sqlite"):
        # SQLite has one writer; a few connections let reads overlap the group-commit writer.
        options: dict[str, Any] = {"pool_size": 4, "max_overflow": 4}
        if drivername == "sqlite+aiosqlite":
            options["module"] = aiosqlite_one_hop.dbapi()  # a quarter of the thread hops
        return options
    return {
        "pool_size": postgres_pool_size,
        "max_overflow": POSTGRES_MAX_OVERFLOW,
        # Reads run outside a transaction: at READ COMMITTED each statement takes its own
        # snapshot either way, and this saves the BEGIN and ROLLBACK round trips of every
        # read, and two of the three of every ping (the driver wraps a ping outside
        # autocommit in a transaction of its own).
        "isolation_level": "AUTOCOMMIT",
    }


def _ping_idle_connections(engine: AsyncEngine) -> None:
    """SQLAlchemy's pre-ping, only for connections idle past POSTGRES_PING_AFTER_IDLE_SECONDS.

    Raising DisconnectionError at checkout makes the pool drop the connection and hand out
    a new one (it tries three times before the error reaches the caller).
    """

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None:  # new: just connected
            return
        if time.monotonic() - returned_at < POSTGRES_PING_AFTER_IDLE_SECONDS:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # whatever the driver raises, the connection is unusable
            raise DisconnectionError(f"an idle connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: AsyncEngine, synchronous: str) -> None:
    """WAL so readers never wait; BEGIN IMMEDIATE for write transactions.

    A deferred transaction that reads and then writes can fail with SQLITE_BUSY at once when
    another connection wrote in between (busy_timeout does not apply to that upgrade), so
    writers take the write lock up front. Reads begin deferred and take no lock.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # The one-hop adapter waits for locks itself (sqlite_locks), looking more often.
        one_hop = isinstance(dbapi_connection, aiosqlite_one_hop.OneHopConnection)
        cursor.execute(f"PRAGMA busy_timeout={0 if one_hop else 30000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(
            aiosqlite_one_hop.BEGIN_WRITE if conn.get_execution_options().get(_WRITE) else "BEGIN"
        )
