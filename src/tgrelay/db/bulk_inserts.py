"""Many rows into one table in one executemany, bound by hand on SQLite.

SQLAlchemy binds an executemany's rows in Python, column by column and row by row: on the
updates worker's batches (an event, a delivery and a job per update, all written while the
transaction holds SQLite's one write lock) that cost ~23 µs a row against ~8 µs for the same
rows bound by `sqlite_inserts.PreparedInsert`, the intake writer's binding (a test holds its
values to SQLAlchemy's own). Inside a write transaction the executemany goes straight to the
connection's sqlite3 handle (`prepared.sqlite_in_write_transaction`), without SQLAlchemy's
per-call work. Other databases keep SQLAlchemy's executemany.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Insert, Table, insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import prepared
from tgrelay.db.sqlite_inserts import PreparedInsert, prepare_insert


class BulkInsert:
    """An INSERT of `columns` into `table`; every row given must have exactly those keys.

    With `replace_conflicts_on` (a unique key), a row whose key is there already overwrites
    that row's other columns instead (an upsert: last written wins).
    """

    def __init__(
        self, table: Table, columns: Sequence[str], *, replace_conflicts_on: Sequence[str] = ()
    ) -> None:
        self._table = table.name
        self._columns = frozenset(columns)
        self._statement = _statement(table, columns, replace_conflicts_on)
        self._sqlite: PreparedInsert = prepare_insert(
            table, columns, replace_conflicts_on=replace_conflicts_on
        )
        self._sqlite_sql = self._sqlite.head + self._sqlite.group + self._sqlite.tail

    async def __call__(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        if conn.dialect.name != "sqlite":
            await conn.execute(self._statement, list(rows))
            return
        if rows[0].keys() != self._columns:  # a row with other keys fails in its itemgetter
            raise ValueError(
                f"rows for {self._table} must have the columns "
                f"{sorted(self._columns)}, not {sorted(rows[0])}"
            )
        values = self._sqlite.params(rows)
        raw = prepared.sqlite_in_write_transaction(conn)
        if raw is None:
            await conn.exec_driver_sql(self._sqlite_sql, [tuple(row) for row in values])
            return
        prepared.execute_many(raw, self._sqlite_sql, values)  # in place under the lock


def _statement(table: Table, columns: Sequence[str], key: Sequence[str]) -> Insert:
    """SQLAlchemy's statement, for PostgreSQL."""
    if not key:
        return insert(table)
    statement = postgresql.insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(key),
        set_={name: statement.excluded[name] for name in columns if name not in key},
    )
