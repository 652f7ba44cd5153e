"""Prepared statements give what SQLAlchemy's own execution gives, without its per-call work on
SQLite inside the write lock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import prepared, tables
from tgrelay.db.engine import Database
from tgrelay.queue import store
from tgrelay.queue.models import NewJob

NOW = datetime(2026, 12, 7, 19, 0, 0, 250, tzinfo=UTC)
jobs = tables.jobs

JOBS_BY_ID = select(jobs).where(jobs.c.id.in_(bindparam("ids", expanding=True))).order_by(jobs.c.id)
KEYS_BY_ID = text(
    "SELECT id, ordering_key FROM jobs WHERE id IN :ids AND queue = :queue ORDER BY id"
).bindparams(bindparam("ids", expanding=True))
START = (
    update(jobs)
    .where(jobs.c.id.in_(bindparam("ids", expanding=True)))
    .values(
        state="running",
        attempts=jobs.c.attempts + 1,
        locked_by=bindparam("worker"),
        lease_expires_at=bindparam("until", type_=jobs.c.lease_expires_at.type),
    )
    .returning(*jobs.c)
)


class _Undo(Exception):
    """Rolls a transaction back once its result is read."""


async def _enqueued(db: Database, count: int) -> list[int]:
    new_jobs = [
        NewJob(kind="note", payload={"n": n}, ordering_key=f"chat:{n % 2}", run_at=NOW)
        for n in range(count)
    ]
    async with db.transaction() as conn:
        return await store.enqueue(conn, new_jobs, now=NOW, default_max_attempts=5)


async def _both_ways(db: Database, statement: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    """The rows of SQLAlchemy's execution (then undone) and of the prepared statement, each in
    a write transaction on the same rows; and the table after each."""
    by_sqlalchemy: list[tuple[Any, ...]] = []
    try:
        async with db.transaction() as conn:
            by_sqlalchemy = [tuple(row) for row in await conn.execute(statement, params)]
            after_sqlalchemy = await _table(conn)
            raise _Undo
    except _Undo:
        pass
    async with db.transaction() as conn:
        by_prepared = [tuple(row) for row in await prepared.Prepared(statement)(conn, params)]
        after_prepared = await _table(conn)
    return (by_sqlalchemy, after_sqlalchemy), (by_prepared, after_prepared)


async def _table(conn: AsyncConnection) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.execute(select(jobs).order_by(jobs.c.id))]


async def test_a_select_with_an_expanding_list_and_timestamps_reads_as_sqlalchemy_reads_it(
    db: Database,
) -> None:
    """Rows of a Core select come with their columns' types applied (timestamps as aware
    datetimes), whatever the list's length, in the statement's column order."""
    ids = await _enqueued(db, 3)
    for chosen in (ids, ids[:1], []):
        theirs, ours = await _both_ways(db, JOBS_BY_ID, {"ids": chosen})
        assert ours == theirs
        assert len(ours[0]) == len(chosen)
    theirs, ours = await _both_ways(db, JOBS_BY_ID, {"ids": ids})
    assert ours[0][0][jobs.c.keys().index("run_at")] == NOW


async def test_an_update_returning_changes_and_returns_what_sqlalchemy_does(db: Database) -> None:
    """Literal values, an expression, bound timestamps and RETURNING: the same rows back and
    the same table after."""
    ids = await _enqueued(db, 4)
    params = {"ids": ids[1:3], "worker": "w-1", "until": NOW + timedelta(seconds=30)}
    theirs, ours = await _both_ways(db, START, params)
    assert ours == theirs
    assert [row[0] for row in ours[0]] == ids[1:3]


async def test_rows_are_read_by_column_name(db: Database) -> None:
    """A text() statement without declared columns is named by its result; values as stored."""
    ids = await _enqueued(db, 2)
    async with db.transaction() as conn:
        rows = await prepared.Prepared(KEYS_BY_ID)(conn, {"ids": ids, "queue": "default"})
    assert [(row.id, row.ordering_key) for row in rows] == [(ids[0], "chat:0"), (ids[1], "chat:1")]


async def test_outside_a_write_transaction_it_is_sqlalchemys_execution(db: Database) -> None:
    """A read connection has no write lock to run in: the statement goes through SQLAlchemy."""
    ids = await _enqueued(db, 2)
    async with db.engine.connect() as conn:
        assert prepared.sqlite_in_write_transaction(conn) is None
        rows = await prepared.Prepared(KEYS_BY_ID)(conn, {"ids": ids, "queue": "default"})
    assert [row.id for row in rows] == ids


async def test_a_failed_statement_raises_sqlalchemys_error(db: Database) -> None:
    """A constraint broken in place is SQLAlchemy's IntegrityError, as callers expect."""
    (job_id,) = await _enqueued(db, 1)
    duplicate = text("INSERT INTO job_keys (ordering_key, last_job_id) VALUES (:key, :job)")
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await prepared.Prepared(duplicate)(conn, {"key": "chat:0", "job": job_id})


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_on_sqlite_under_the_write_lock_sqlalchemy_is_not_involved(db: Database) -> None:
    """The point of it: no statement of a prepared run passes through SQLAlchemy's execution
    (its cursor events see none), while an ordinary one does."""
    ids = await _enqueued(db, 2)
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with db.transaction() as conn:
            assert prepared.sqlite_in_write_transaction(conn) is not None
            assert seen == ["BEGIN IMMEDIATE"]
            rows = await prepared.Prepared(JOBS_BY_ID)(conn, {"ids": ids})
            assert seen == ["BEGIN IMMEDIATE"]
            await conn.execute(JOBS_BY_ID, {"ids": ids})
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert [row.id for row in rows] == ids
    assert len(seen) == 2


RESCHEDULE = (
    update(jobs)
    .where(jobs.c.id == bindparam("job_id"))
    .values(run_at=bindparam("at", type_=jobs.c.run_at.type), attempts=jobs.c.attempts + 1)
)


async def test_many_parameter_sets_change_what_sqlalchemys_executemany_changes(
    db: Database,
) -> None:
    """`many` runs the statement once per parameter set, bound by their types."""
    ids = await _enqueued(db, 3)
    sets = [{"job_id": ids[0], "at": NOW + timedelta(minutes=1)}, {"job_id": ids[2], "at": NOW}]
    before = await _table_now(db)
    try:
        async with db.transaction() as conn:
            await conn.execute(RESCHEDULE, sets)
            by_sqlalchemy = await _table(conn)
            raise _Undo
    except _Undo:
        pass
    async with db.transaction() as conn:
        await prepared.Prepared(RESCHEDULE).many(conn, sets)
        by_prepared = await _table(conn)
    assert by_prepared == by_sqlalchemy == await _table_now(db)
    changed = [row[0] for row, old in zip(by_prepared, before, strict=True) if row != old]
    assert changed == [ids[0], ids[2]]


async def _table_now(db: Database) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        return await _table(conn)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_many_refuses_a_list_to_expand(db: Database) -> None:
    """An executemany has one SQL text for every set: a list parameter cannot be expanded."""
    ids = await _enqueued(db, 1)
    with pytest.raises(ValueError, match="cannot expand"):
        async with db.transaction() as conn:
            await prepared.Prepared(JOBS_BY_ID).many(conn, [{"ids": ids}])


async def test_a_missing_value_is_refused_as_sqlalchemy_refuses_it(db: Database) -> None:
    """A parameter without a value and without a default is named, not bound as NULL."""
    with pytest.raises(SQLAlchemyError, match="A value is required for bind parameter 'ids'"):
        async with db.transaction() as conn:
            await prepared.Prepared(KEYS_BY_ID)(conn, {"queue": "default"})


async def test_a_failed_executemany_raises_sqlalchemys_error(db: Database) -> None:
    """`many` (and BulkInsert, which writes the same way) breaking a constraint in place is
    SQLAlchemy's IntegrityError too."""
    (job_id,) = await _enqueued(db, 1)
    duplicate = text("INSERT INTO job_keys (ordering_key, last_job_id) VALUES (:key, :job)")
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await prepared.Prepared(duplicate).many(
                conn, [{"key": "chat:9", "job": job_id}, {"key": "chat:0", "job": job_id}]
            )
