"""The one-hop aiosqlite adapter behaves as SQLAlchemy's own, statement for statement."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from tgrelay.db import aiosqlite_one_hop, engine, sqlite_locks
from tgrelay.db.engine import Database

metadata = MetaData()
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'one_hop.db'}")
    async with db.transaction() as conn:
        await conn.run_sync(metadata.create_all)
    yield db
    await db.dispose()


def test_sqlite_engines_use_the_one_hop_adapter(database: Database) -> None:
    assert isinstance(database.engine.dialect.loaded_dbapi, aiosqlite_one_hop.OneHopDBAPI)


async def test_rows_counts_and_ids_come_back_as_from_sqlite(database: Database) -> None:
    async with database.transaction() as conn:
        inserted = await conn.execute(insert(items).values(name="a"))
        assert inserted.inserted_primary_key == (1,)
        returned = await conn.execute(
            insert(items).returning(items.c.id, items.c.name, sort_by_parameter_order=True),
            [{"name": "b"}, {"name": "c"}],
        )
        assert [tuple(row) for row in returned] == [(2, "b"), (3, "c")]
        await conn.execute(insert(items), [{"name": "d"}, {"name": "e"}])  # executemany
        changed = await conn.execute(
            update(items).where(items.c.id > 2).values(name=items.c.name + "!")
        )
        assert changed.rowcount == 3
    async with database.engine.connect() as conn:
        names = list(await conn.scalars(select(items.c.name).order_by(items.c.id)))
        assert names == ["a", "b", "c!", "d!", "e!"]
        assert (await conn.execute(select(items).where(items.c.id == 99))).first() is None


async def _insert_twice(database: Database, *, many: bool) -> None:
    async with database.transaction() as conn:
        if many:
            await conn.execute(insert(items), [{"name": "x"}, {"name": "x"}])
        else:
            await conn.execute(insert(items).values(name="same"))
            await conn.execute(insert(items).values(name="same"))


async def _select_missing(database: Database) -> None:
    async with database.engine.connect() as conn:
        await conn.execute(text("SELECT * FROM missing"))


async def test_errors_are_sqlalchemys_and_roll_the_transaction_back(database: Database) -> None:
    with pytest.raises(IntegrityError):
        await _insert_twice(database, many=False)
    with pytest.raises(IntegrityError):
        await _insert_twice(database, many=True)
    with pytest.raises(OperationalError, match="no such table"):
        await _select_missing(database)
    async with database.engine.connect() as conn:
        assert await conn.scalar(select(items.c.id)) is None  # nothing of either was kept


def _hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another process's writer, as far as SQLite can tell: its own connection and lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_writer_waits_for_another_connections_lock(
    database: Database, tmp_path: Path
) -> None:
    """With SQLite's busy_timeout off, the adapter itself waits, then writes; the event loop
    runs other work meanwhile (BEGIN looks from the loop and sleeps between looks)."""
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(tmp_path / "one_hop.db", 0.3, held))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    holder.start()
    ticker = asyncio.create_task(tick())
    try:
        assert held.wait(timeout=10)
        ticks = 0
        async with database.transaction() as conn:
            waited = ticks
            await conn.execute(insert(items).values(name="after the other writer"))
    finally:
        ticker.cancel()
        holder.join()
    assert waited >= 5  # ~30 turns in the 0.3 s the other writer held the lock
    async with database.engine.connect() as conn:
        assert list(await conn.scalars(select(items.c.name))) == ["after the other writer"]


async def test_a_writer_gives_up_after_the_busy_timeout(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_locks, "BUSY_TIMEOUT_SECONDS", 0.05)
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(tmp_path / "one_hop.db", 1.0, held))
    holder.start()
    try:
        assert held.wait(timeout=10)
        with pytest.raises(OperationalError, match="database is locked"):
            await _insert_twice(database, many=True)
    finally:
        holder.join()


def _traced_threads(db: Database) -> list[tuple[str, bool]]:
    """Every statement `db`'s connections run from now on, as (its first word, whether it
    ran on the calling thread: the event loop's)."""
    loop_thread = threading.get_ident()
    ran: list[tuple[str, bool]] = []

    @event.listens_for(db.engine.sync_engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        raw: sqlite3.Connection = dbapi_connection._connection._conn
        raw.set_trace_callback(
            lambda sql: ran.append((sql.split()[0].upper(), threading.get_ident() == loop_thread))
        )

    return ran


async def test_a_write_transactions_statements_run_on_the_event_loops_thread(
    tmp_path: Path,
) -> None:
    """From BEGIN IMMEDIATE to the transaction's end, no statement hops to aiosqlite's
    thread: each hop (BEGIN's way back included) would hold the write lock through a turn of
    the event loop. COMMIT, ROLLBACK and reads still hop."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}")
    ran = _traced_threads(db)

    try:
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)
        ran.clear()
        async with db.transaction() as conn:
            await conn.execute(insert(items), [{"name": "a"}, {"name": "b"}])
            await conn.execute(select(items.c.id))
        async with db.engine.connect() as conn:
            await conn.execute(select(items.c.name))
        with pytest.raises(IntegrityError):
            async with db.transaction() as conn:
                await conn.execute(insert(items).values(name="a"))
        async with db.engine.connect() as conn:
            await conn.execute(select(items.c.name))
    finally:
        await db.dispose()
    assert [entry for entry in ran if entry[0] != "PRAGMA"] == [
        ("BEGIN", True),  # takes the lock when the loop is there to use it
        ("INSERT", True),
        ("INSERT", True),
        ("SELECT", True),
        ("COMMIT", False),
        ("BEGIN", False),  # a read
        ("SELECT", False),
        ("ROLLBACK", False),
        ("BEGIN", True),
        ("INSERT", True),  # fails: the transaction rolls back
        ("ROLLBACK", False),
        ("BEGIN", False),  # reads hop again once the write lock is given back
        ("SELECT", False),
        ("ROLLBACK", False),
    ]


async def test_a_connection_that_committed_hops_again_within_its_checkout(tmp_path: Path) -> None:
    """The pool's rollback on return is not what ends the write lock's mode: a connection that
    committed and goes on (a read, as a deferred transaction) waits off the loop again."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'commit.db'}")
    ran = _traced_threads(db)

    try:
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)
        async with db.engine.connect() as conn:
            await conn.execution_options(**{engine._WRITE: True})
            ran.clear()
            async with conn.begin():
                await conn.execute(insert(items).values(name="a"))
            await conn.execution_options(**{engine._WRITE: False})
            await conn.execute(select(items.c.name))
    finally:
        await db.dispose()
    assert [entry for entry in ran if entry[0] != "PRAGMA"][:5] == [
        ("BEGIN", True),
        ("INSERT", True),
        ("COMMIT", False),
        ("BEGIN", False),
        ("SELECT", False),
    ]


async def test_a_checkout_hops_only_for_statements_that_do_something(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool's rollback when a connection comes back finds no transaction after a commit
    (or after a read's own rollback): it costs no hop to aiosqlite's thread."""
    hops: list[str] = []
    execute: Any = aiosqlite.Connection._execute  # untyped in aiosqlite

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any) -> Any:
        hops.append(getattr(fn, "__name__", "?"))
        return await execute(self, fn, *args)

    async with database.engine.connect() as conn:  # a pooled connection, opened already
        await conn.execute(select(items.c.id))
    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with database.transaction() as conn:
        await conn.execute(insert(items).values(name="a"))
    assert hops == ["commit"]  # BEGIN IMMEDIATE and the INSERT in place; COMMIT
    hops.clear()
    async with database.engine.connect() as conn:
        await conn.execute(select(items.c.name))
    assert hops == ["run", "run", "rollback"]  # BEGIN, SELECT, the read's ROLLBACK
    hops.clear()
    with pytest.raises(IntegrityError):
        async with database.transaction() as conn:
            await conn.execute(insert(items).values(name="a"))
    assert hops == ["rollback"]  # a failed write still rolls back on the thread
