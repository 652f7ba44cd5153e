"""Ids for rows about to be inserted, taken before the INSERT.

Knowing them up front lets a batch of rows go in as one executemany, without RETURNING:
SQLAlchemy sends an INSERT … RETURNING with `sort_by_parameter_order` one row at a time on
SQLite, and a statement per row was most of what some transactions sent.
"""

from __future__ import annotations

import functools

from sqlalchemy import Table, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import prepared


async def new_ids(conn: AsyncConnection, table: Table, count: int) -> list[int]:
    """`count` unused ids of `table`'s integer primary key `id`, ascending.

    Call it inside the write transaction that inserts them: on SQLite the transaction holds
    the one write lock, so the largest id plus one is ours (as SQLite itself would give it);
    PostgreSQL hands out the sequence's next values.
    """
    if count <= 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = await conn.execute(_postgres_ids(table.name), {"count": count})
        return sorted(int(row_id) for (row_id,) in rows)
    ((largest,),) = await _sqlite_largest_id(table.name)(conn)
    return list(range(int(largest) + 1, int(largest) + 1 + count))


@functools.cache
def _postgres_ids(table: str) -> TextClause:
    return text(
        f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "  # noqa: S608 (our tables)
        "FROM generate_series(1, :count)"
    )


@functools.cache
def _sqlite_largest_id(table: str) -> prepared.Prepared:
    # Prepared: in the updates worker's transactions, in place under the write lock.
    largest = f"SELECT coalesce(max(id), 0) FROM {table}"  # noqa: S608 (our tables)
    return prepared.Prepared(text(largest))
