"""A dedicated SQLite writer: one sqlite3 connection on one thread, one hop per batch.

Through SQLAlchemy's async adapter every statement of a transaction is a round trip between
the event loop and aiosqlite's thread; for the intake's group commit (BEGIN, insert updates,
read their ids, insert jobs, COMMIT) that overhead, not SQLite, was the limit. Here a whole
batch runs in one call on the writer thread. Statements are still compiled by SQLAlchemy
from the declared tables, so the schema stays in one place.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from tgrelay.db import sqlite_locks

T = TypeVar("T")
_DIALECT = sqlite.dialect()


@dataclass(frozen=True)
class PreparedInsert:
    """An INSERT compiled once for sqlite3's qmark style, with each column's bind processing."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def params(self, rows: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        pairs = list(zip(self.columns, self.processors, strict=True))
        return [
            tuple(row[c] if p is None or row[c] is None else p(row[c]) for c, p in pairs)
            for row in rows
        ]


def prepare_insert(
    table: Table, columns: Sequence[str], *, ignore_conflicts_on: Sequence[str] = ()
) -> PreparedInsert:
    statement = sqlite.insert(table)
    if ignore_conflicts_on:
        statement = statement.on_conflict_do_nothing(index_elements=list(ignore_conflicts_on))
    compiled = statement.compile(dialect=_DIALECT, column_keys=list(columns))
    order = tuple(compiled.positiontup or ())
    processors = tuple(table.c[name].type.bind_processor(_DIALECT) for name in order)
    return PreparedInsert(sql=str(compiled), columns=order, processors=processors)


def result_processor(table: Table, column: str) -> Callable[[Any], Any]:
    """How SQLAlchemy would turn a raw value of `column` into Python (e.g. text → datetime)."""
    process = table.c[column].type.result_processor(_DIALECT, None)
    return process if process is not None else (lambda value: value)


class SqliteThread:
    """Runs functions against one sqlite3 connection, each in its own IMMEDIATE transaction."""

    def __init__(self, url: str, *, synchronous: str) -> None:
        database = make_url(url).database
        if not database:
            raise ValueError("the SQLite writer needs a database file")
        self._path = database
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None

    async def transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, work)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        sqlite_locks.patiently(conn.execute, "BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            sqlite_locks.patiently(conn.execute, "PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=0")  # sqlite_locks waits, looking more often
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
