"""SQLAlchemy's aiosqlite driver with one thread hop per statement instead of four, and none
for a write transaction (`OneHopConnection`).

aiosqlite runs sqlite3 on a thread of its own; each call crosses to it and back. SQLAlchemy's
adapter makes four crossings per statement (open a cursor, execute, fetch, close), and on
this project's 2-core machines a crossing costs about 100 µs of wake-ups, so a `SELECT 1`
took 515 µs against 94 µs for aiosqlite alone. This adapter does the four steps in one
function on aiosqlite's thread. Everything else (pooling, transactions, errors, types) is
SQLAlchemy's and aiosqlite's own; `Database` passes it as the engine's DBAPI module. It
waits for other connections' locks itself (`sqlite_locks`), with SQLite's busy_timeout off.

It relies on two internals, both pinned by uv.lock and exercised by every SQLite test:
aiosqlite's `Connection._execute(fn)` (run `fn` on the connection's thread) and the cursor
hooks of SQLAlchemy's `AsyncAdapt_dbapi_cursor` (`_execute_async`, `_executemany_async`).
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util.concurrency import await_

from tgrelay.db import sqlite_locks

BEGIN_WRITE = "BEGIN IMMEDIATE"  # how engine.py begins a write transaction: the lock, up front


class _Outcome:
    """What a finished sqlite3 cursor leaves: the attributes SQLAlchemy reads afterwards."""

    __slots__ = ("arraysize", "description", "lastrowid", "rowcount")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def take(self, cursor: sqlite3.Cursor) -> None:
        self.description = cursor.description
        self.rowcount = cursor.rowcount
        self.lastrowid = cursor.lastrowid

    def close(self) -> None:
        return None  # the sqlite3 cursor behind it closed when its statement ended


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """Execute, fetch every row and close on aiosqlite's thread, in one call."""

    __slots__ = ()
    _awaitable_cursor_close = False

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Outcome()  # no sqlite3 cursor yet: each statement opens and closes its own

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        arguments = () if parameters is None else parameters
        begins_write = operation == BEGIN_WRITE
        await self._in_one_hop(
            lambda cursor: cursor.execute(operation, arguments), begins_write=begins_write
        )
        if begins_write:  # the lock is this connection's until it ends
            self._one_hop_connection.holds_write_lock = True

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._in_one_hop(lambda cursor: cursor.executemany(operation, seq_of_parameters))

    async def _in_one_hop(
        self, execute: Callable[[sqlite3.Cursor], object], *, begins_write: bool = False
    ) -> None:
        """On aiosqlite's thread: open a cursor, execute (waiting out locks), fetch, close.

        A write transaction's BEGIN and statements, on the calling thread instead: see
        `OneHopConnection`."""
        outcome: _Outcome = self._cursor  # type: ignore[assignment]
        raw: sqlite3.Connection = self._connection._conn

        def run(wait: Callable[..., Any]) -> list[Any]:
            cursor = raw.cursor()
            try:
                wait(execute, cursor)
                rows = cursor.fetchall() if cursor.description else []
                outcome.take(cursor)
                return rows
            finally:
                cursor.close()

        connection = self._one_hop_connection
        async with connection._execute_mutex:
            if connection.holds_write_lock:
                self._rows = collections.deque(run(_at_once))
            elif begins_write:
                self._rows = collections.deque(await sqlite_locks.patiently_in_place(run, _at_once))
            else:
                self._rows = collections.deque(
                    await self._connection._execute(run, sqlite_locks.patiently)
                )

    @property
    def _one_hop_connection(self) -> OneHopConnection:
        return cast(OneHopConnection, self._adapt_connection)

    async def _async_soft_close(self) -> None:
        return None  # nothing stays open between statements


def _at_once(execute: Callable[..., Any], *args: Any) -> Any:
    """No waiting: under the write lock, SQLITE_BUSY cannot come (and would not be waited
    out on the event loop's thread if it did: the statement fails, its transaction rolls back)."""
    return execute(*args)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """A write transaction's BEGIN IMMEDIATE and statements run on the event loop's thread,
    without a hop.

    BEGIN looks for the lock from the loop and sleeps there between looks
    (`sqlite_locks.patiently_in_place`), so the lock is taken only when the loop is at the
    statements that use it. Once BEGIN IMMEDIATE returned, SQLite's write lock is this
    connection's and no statement of it waits for another connection (WAL: readers never
    block the writer). A hop to
    aiosqlite's thread and back would then cost the lock a whole turn of the event loop per
    statement: under load, serve's loop has hundreds of intake callbacks ready, and an
    updates transaction of 13 statements held the lock for ~60 % of its time waiting for
    them. Run in place, the transaction keeps the loop until it commits, and holds the lock
    only for its own work. COMMIT and ROLLBACK still go to aiosqlite's thread (a commit may
    checkpoint the WAL, which writes the database file).
    """

    __slots__ = ("holds_write_lock",)
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.holds_write_lock = False

    def commit(self) -> None:
        self.holds_write_lock = False
        super().commit()

    def rollback(self) -> None:
        self.holds_write_lock = False
        raw = self._connection._connection  # None once closed: the adapter skips it then
        if raw is not None and not raw.in_transaction:
            # Nothing to undo: the pool's reset after a commit, or after a read's own rollback
            # (each checkout ended with two). sqlite3 would do nothing on its thread; the hop
            # alone cost a wake-up of that thread and a turn of the event loop.
            return
        super().rollback()


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module the engine uses: aiosqlite connections, one-hop cursors."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        # The connection is used from the loop's thread inside write transactions (never at
        # the same time as from aiosqlite's: statements of one connection run one at a time).
        connection = aiosqlite.connect(*arg, **(kw | {"check_same_thread": False}))
        connection._thread.daemon = True  # as SQLAlchemy's own adapter: never block exit
        # SQLAlchemy's own adapter passes the aiosqlite connection the same way.
        return OneHopConnection(self, cast(Any, await_(connection)))


def dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)
