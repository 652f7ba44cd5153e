"""Statements built once and run without SQLAlchemy's per-call work inside SQLite's write lock.

An updates transaction runs about a dozen small statements however few updates it holds,
and on SQLite it holds the one write lock (and, in place, serve's event loop:
`aiosqlite_one_hop`) for all of them. Through `AsyncConnection.execute` each costs
~120 µs of Python on this project's machines (the greenlet hop, the execution context,
expanding the IN lists, the result object) where sqlite3 takes ~2 µs: in `bench/soak.py`
at 1,000 updates/s that was most of a transaction's time under the lock. A `Prepared`
statement is compiled once; inside a write transaction on SQLite it binds its parameters
with the types' own processors, expands its IN lists from a cache, and runs on the
connection's sqlite3 handle directly. Elsewhere (PostgreSQL, reads outside the lock) it is
an ordinary `conn.execute`. Either way the caller gets a list of rows read by column name.

It relies on SQLAlchemy's compiled form of a statement (`positiontup`, `binds`,
`_result_columns`, the `__[POSTCOMPILE_name]` marks of expanding parameters), pinned by
uv.lock; tests/db/test_prepared.py holds each kind of statement it serves (selects,
UPDATE … RETURNING, `text()`, executemany) to SQLAlchemy's own results, and the queue's,
the inbox's and the events' tests run the real ones on both backends.
"""

from __future__ import annotations

import collections
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

Row = Any  # a row read by column name (`row.id`); a NamedTuple here, SQLAlchemy's Row elsewhere
_EXPANDING = re.compile(r"\(?__\[POSTCOMPILE_(\w+)\]\)?")
# SQL texts kept per statement, one per combination of its lists' lengths: a worker's
# batches come in a few dozen sizes; past this many the cache starts over.
_MOST_SQL_TEXTS = 512


def sqlite_in_write_transaction(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The sqlite3 handle of `conn` while its transaction holds SQLite's write lock; else None.

    Synchronous on purpose: nothing here awaits, so nothing else of this process runs on the
    connection meanwhile (its statements already run on the loop's thread then)."""
    if conn.dialect.name != "sqlite":
        return None
    sync = conn.sync_connection
    if sync is None or sync.closed or sync.invalidated:
        return None
    adapted = sync.connection.dbapi_connection
    if not getattr(adapted, "holds_write_lock", False):
        return None
    return cast(sqlite3.Connection, adapted._connection._conn)  # type: ignore[union-attr]


def execute_many(raw: sqlite3.Connection, sql: str, values: Sequence[Sequence[Any]]) -> None:
    """sqlite3's executemany under the write lock, its errors raised as SQLAlchemy's."""
    try:
        raw.executemany(sql, values)
    except sqlite3.Error as error:
        raise translated(sql, values, error) from error


def translated(statement: str, params: Any, error: sqlite3.Error) -> exc.DBAPIError:
    """sqlite3's error as SQLAlchemy raises it (IntegrityError, OperationalError, ...), so
    callers see one error tree whichever way a statement ran."""
    return cast(
        exc.DBAPIError,
        exc.DBAPIError.instance(statement, params, error, sqlite3.Error),
    )


class Prepared:
    """A statement (Core or `text()`) whose SQLite form is compiled at its first run."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._sqlite: _SqliteForm | None = None

    async def __call__(
        self, conn: AsyncConnection, params: Mapping[str, Any] | None = None
    ) -> list[Row]:
        """Run with `params`: the rows it returns (none for a statement without results)."""
        raw = sqlite_in_write_transaction(conn)
        if raw is None:
            result = await conn.execute(self.statement, dict(params or {}))
            return list(result.all()) if result.returns_rows else []
        return self._form(conn).run(raw, params or {})

    async def many(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set of `rows` (an executemany; no expanding lists, and
        whatever the statement returns is dropped)."""
        if not rows:
            return
        raw = sqlite_in_write_transaction(conn)
        if raw is None:
            await conn.execute(self.statement, [dict(row) for row in rows])
            return
        self._form(conn).run_many(raw, rows)

    def _form(self, conn: AsyncConnection) -> _SqliteForm:
        if self._sqlite is None:
            self._sqlite = _SqliteForm(self.statement, conn.dialect)
        return self._sqlite


class _SqliteForm:
    """The statement compiled for SQLite: its SQL in pieces around the expanding parameters,
    its parameters' order, defaults and bind processors, its result's names and processors."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, cast(ClauseElement, statement).compile(dialect=dialect))
        binds = compiled.binds
        self._order: list[str] = list(compiled.positiontup or [])
        self._expanding = frozenset(
            name for name in self._order if name in binds and binds[name].expanding
        )
        self._defaults: dict[str, Any] = {
            name: binds[name].effective_value
            for name in self._order
            if name in binds and not binds[name].required
        }
        self._binders: dict[str, Callable[[Any], Any]] = {}
        for name in self._order:
            bind = binds.get(name)
            processor = (
                None if bind is None else bind.type.dialect_impl(dialect).bind_processor(dialect)
            )
            if processor is not None:
                self._binders[name] = processor
        self._pieces = _EXPANDING.split(compiled.string)  # text, name, text, name, ..., text
        self._sql_by_lengths: dict[tuple[int, ...], str] = {}
        columns = compiled._result_columns
        names = [column[0] for column in columns]
        self._readers = [
            column[3].dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]
        # A `text()` without declared columns is named by its first result.
        self._row_type: Callable[..., tuple[Any, ...]] | None = _row_type(names) if names else None
        self._reads_plain = not any(self._readers)

    def run(self, raw: sqlite3.Connection, params: Mapping[str, Any]) -> list[Row]:
        values, lengths = self._bound(params)
        sql = self._sql(lengths)
        try:
            cursor = raw.execute(sql, values)
            fetched = cursor.fetchall() if cursor.description else []
        except sqlite3.Error as error:
            raise translated(sql, values, error) from error
        if not fetched:
            return []
        if self._row_type is None:
            self._row_type = _row_type([column[0] for column in cursor.description])
        row_type = self._row_type
        if self._reads_plain:
            return [row_type(*row) for row in fetched]
        readers = self._readers
        return [
            row_type(*[v if r is None else r(v) for v, r in zip(row, readers, strict=True)])
            for row in fetched
        ]

    def run_many(self, raw: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if self._expanding:
            raise ValueError("an executemany cannot expand a list parameter")
        execute_many(raw, self._sql(()), [self._bound(row)[0] for row in rows])

    def _bound(self, params: Mapping[str, Any]) -> tuple[list[Any], tuple[int, ...]]:
        """The values in the SQL's order, bound by their types, and each expanding list's
        length."""
        values: list[Any] = []
        lengths: list[int] = []
        for name in self._order:
            if name in params:
                value = params[name]
            elif name in self._defaults:
                value = self._defaults[name]
            else:  # SQLAlchemy's own words for it
                raise exc.InvalidRequestError(f"A value is required for bind parameter {name!r}")
            binder = self._binders.get(name)
            if name in self._expanding:
                items = list(value)
                lengths.append(len(items))
                values += items if binder is None else [binder(item) for item in items]
            else:
                values.append(value if binder is None else binder(value))
        return values, tuple(lengths)

    def _sql(self, lengths: tuple[int, ...]) -> str:
        """The SQL with each expanding parameter's marks for these list lengths."""
        sql = self._sql_by_lengths.get(lengths)
        if sql is None:
            if len(self._sql_by_lengths) >= _MOST_SQL_TEXTS:
                self._sql_by_lengths.clear()
            pieces = self._pieces
            by_name = dict(zip(self._expanding_in_order(), lengths, strict=True))
            parts = [pieces[0]]
            for i in range(1, len(pieces), 2):
                count = by_name[pieces[i]]
                # SQLAlchemy's empty IN: a subquery that selects nothing, of the right arity.
                marks = ", ".join("?" * count) if count else "SELECT 1 FROM (SELECT 1) WHERE 1!=1"
                parts += [f"({marks})", pieces[i + 1]]
            sql = self._sql_by_lengths[lengths] = "".join(parts)
        return sql

    def _expanding_in_order(self) -> list[str]:
        return [name for name in self._order if name in self._expanding]


def _row_type(names: Sequence[str]) -> Callable[..., tuple[Any, ...]]:
    return collections.namedtuple("Row", names, rename=True)
