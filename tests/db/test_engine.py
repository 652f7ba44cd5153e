"""The PostgreSQL engine: reads outside a transaction, writes in one, a pool of the set size."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from tests.databases import PostgresServer, migrated_sqlite
from tgrelay.db import engine, tables
from tgrelay.db.engine import Database

pytestmark = pytest.mark.postgres

# A pause between two statements, long enough for transaction_timestamp() to tell them apart.
PAUSE = text("SELECT pg_sleep(0.01)")
STARTED = text("SELECT transaction_timestamp()")


@pytest.fixture
async def db(postgres: PostgresServer, postgres_template: str | None) -> AsyncIterator[Database]:
    async with postgres.fresh_database(template=postgres_template) as url:
        # One connection, so every block below reuses the one a transaction returned.
        database = Database(url, postgres_pool_size=1)
        yield database
        await database.dispose()


async def drop_the_pooled_connection(db: Database) -> None:
    """Have the server end the pool's one connection while it sits idle (a restart would)."""
    async with db.engine.connect() as conn:
        pid = await conn.scalar(text("SELECT pg_backend_pid()"))
    other = Database(db.url, postgres_pool_size=1)
    try:
        async with other.engine.connect() as conn:
            assert await conn.scalar(text(f"SELECT pg_terminate_backend({int(pid)})"))
    finally:
        await other.dispose()


async def started_twice(db: Database, *, in_transaction: bool) -> tuple[datetime, datetime]:
    """When the transaction around each of two statements began."""
    block = db.transaction() if in_transaction else db.engine.connect()
    async with block as conn:
        first = await conn.scalar(STARTED)
        await conn.execute(PAUSE)
        second = await conn.scalar(STARTED)
    assert isinstance(first, datetime)
    assert isinstance(second, datetime)
    return first, second


async def test_reads_run_each_statement_on_its_own(db: Database) -> None:
    """A read opens no transaction (no BEGIN and ROLLBACK round trips), also on a connection
    that a write transaction gave back to the pool."""
    first, second = await started_twice(db, in_transaction=False)
    async with db.transaction() as conn:
        await conn.execute(PAUSE)
    after_write = await started_twice(db, in_transaction=False)
    assert first < second
    assert after_write[0] < after_write[1]
    assert db.engine.pool.size() == 1  # type: ignore[attr-defined]


async def test_writes_are_one_read_committed_transaction(db: Database) -> None:
    """Statements of `transaction()` share one transaction, at READ COMMITTED."""
    first, second = await started_twice(db, in_transaction=True)
    async with db.transaction() as conn:
        isolation = await conn.scalar(text("SHOW transaction_isolation"))
    assert (first == second, isolation) == (True, "read committed")


async def insert_then_fail(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            tables.leases.insert().values(
                name="lease", holder="a", expires_at=datetime.fromisoformat("2026-11-21T12:00Z")
            )
        )
        raise RuntimeError("after the insert")


async def test_a_sqlite_write_transaction_tells_how_long_it_held_the_lock(
    tmp_path: Path,
) -> None:
    """From BEGIN IMMEDIATE to COMMIT, once per committed transaction, with the name of its
    writer (what tgrelay_sqlite_write_lock_seconds{writer=…} observes); a rolled back one
    tells nothing."""
    await migrated_sqlite(tmp_path / "tgrelay.db")
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'tgrelay.db'}")
    held: list[tuple[str, float]] = []
    database.on_write_lock_held = lambda writer, seconds: held.append((writer, seconds))

    async def write() -> None:
        async with database.transaction() as conn:
            await conn.execute(text("SELECT 1"))

    try:
        async with database.transaction() as conn:
            await conn.execute(text("SELECT 1"))
            await asyncio.sleep(0.02)  # work done while holding the lock
        with pytest.raises(RuntimeError):
            async with database.transaction():
                raise RuntimeError("undone")
        with engine.writing_as("retention"):
            await write()
            await asyncio.create_task(write())  # a task started in the block is its too
        await write()
    finally:
        await database.dispose()
    assert [writer for writer, _ in held] == [
        "transactions",
        "retention",
        "retention",
        "transactions",
    ]
    assert 0.02 <= held[0][1] < 5


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    """An error inside `transaction()` rolls back what it wrote, though reads autocommit."""
    with pytest.raises(RuntimeError, match="after the insert"):
        await insert_then_fail(db)
    async with db.engine.connect() as conn:
        names = (await conn.scalars(select(tables.leases.c.name))).all()
    assert names == []


@pytest.mark.parametrize("idle_for_ping", [0.0, 3600.0])
async def test_a_connection_dropped_while_idle_is_replaced_after_its_ping(
    db: Database, monkeypatch: pytest.MonkeyPatch, idle_for_ping: float
) -> None:
    """A connection idle past POSTGRES_PING_AFTER_IDLE_SECONDS is pinged at checkout, and a
    dead one replaced unseen; one used more recently than that is not pinged."""
    monkeypatch.setattr(engine, "POSTGRES_PING_AFTER_IDLE_SECONDS", idle_for_ping)
    await drop_the_pooled_connection(db)

    async def read() -> object:
        async with db.engine.connect() as conn:
            return await conn.scalar(text("SELECT 1"))

    if idle_for_ping:
        with pytest.raises(DBAPIError):
            await read()
    else:
        assert await read() == 1


async def test_a_transaction_on_a_dropped_connection_raises_the_disconnection(
    db: Database,
) -> None:
    """A transaction that meets a connection the server ended (a restart within the ping's
    idle time) fails with the driver's error, which callers treat as transient, and the
    next transaction gets a new connection. Tidying up after the failure once reconnected
    outside SQLAlchemy's greenlet and raised MissingGreenlet in its place."""
    await drop_the_pooled_connection(db)
    with pytest.raises(DBAPIError) as failure:
        async with db.transaction() as conn:
            await conn.execute(text("SELECT 1"))
    assert failure.value.connection_invalidated
    async with db.transaction() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
