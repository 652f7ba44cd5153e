"""BulkInsert stores what SQLAlchemy's own executemany stores, bound by hand on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, Table, Text, event, insert, select, text
from sqlalchemy.exc import IntegrityError

from tgrelay.db.bulk_inserts import BulkInsert
from tgrelay.db.engine import Database
from tgrelay.db.tables import jobs, telegram_chats
from tgrelay.db.types import Timestamp
from tgrelay.queue.models import NewJob
from tgrelay.queue.store import JOB_COLUMNS, job_values

NOW = datetime(2026, 12, 6, 23, 0, 0, 120, tzinfo=UTC)

metadata = MetaData()
samples = Table(
    "samples",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Timestamp(), nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("note", Text, nullable=True),
)
SAMPLE_ROWS: list[dict[str, Any]] = [
    {"at": NOW, "ok": True, "note": "first"},
    {"at": None, "ok": False, "note": None},
    {"at": datetime(2026, 1, 1, tzinfo=UTC), "ok": True, "note": "ü, ' and \""},
]


def _job_rows(first_id: int) -> list[dict[str, Any]]:
    new_jobs = [
        NewJob(kind="deliver_event", queue="webhooks", payload={}, subject_id=7, trace_id="t1"),
        NewJob(kind="note", payload={"n": 1}, ordering_key="chat:1", run_at=NOW),
    ]
    rows = [job_values(job, now=NOW, default_max_attempts=8) for job in new_jobs]
    for offset, row in enumerate(rows):
        row["id"] = first_id + offset
    return rows


async def _stored(db: Database, table: str) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))  # noqa: S608
        return [tuple(row)[1:] for row in rows]  # without the id


async def test_job_rows_are_stored_as_by_sqlalchemy(db: Database) -> None:
    bulk = BulkInsert(jobs, JOB_COLUMNS)
    async with db.transaction() as conn:
        await bulk(conn, _job_rows(1))
    by_bulk = await _stored(db, "jobs")
    async with db.transaction() as conn:
        await conn.execute(text("DELETE FROM jobs"))
        await conn.execute(insert(jobs), _job_rows(1))
    assert by_bulk == await _stored(db, "jobs")
    assert len(by_bulk) == 2


async def test_a_row_breaking_a_constraint_raises_sqlalchemys_integrity_error(
    db: Database,
) -> None:
    """A duplicate id fails the whole write as SQLAlchemy's IntegrityError, whichever way
    the rows were written, and nothing of it stays."""
    bulk = BulkInsert(jobs, JOB_COLUMNS)
    async with db.transaction() as conn:
        await bulk(conn, _job_rows(1))
    with pytest.raises(IntegrityError):
        async with db.transaction() as conn:
            await bulk(conn, _job_rows(3) + _job_rows(2))
    assert len(await _stored(db, "jobs")) == 2


async def test_sqlite_rows_are_bound_by_hand_and_written_in_place_under_the_lock(
    tmp_path: Path,
) -> None:
    """In a write transaction the rows go straight to sqlite3 (SQLAlchemy's cursor events see
    no INSERT of them); in any other transaction, as one executemany that SQLAlchemy did not
    compile. Either way the table holds what SQLAlchemy's own INSERT stores."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    executed: list[tuple[bool, bool]] = []  # (compiled by SQLAlchemy, executemany)

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _note(*args: Any) -> None:
        context, executemany = args[4], args[5]
        if "INSERT INTO samples" in args[2]:
            executed.append((context.compiled is not None, executemany))

    bulk = BulkInsert(samples, ["at", "ok", "note"])
    try:
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)
            await bulk(conn, SAMPLE_ROWS)
        in_place = await _stored(db, "samples")
        assert executed == []
        async with db.engine.begin() as conn:  # not a `Database.transaction`: no lock taken
            await conn.execute(text("DELETE FROM samples"))
            await bulk(conn, SAMPLE_ROWS)
        by_driver = await _stored(db, "samples")
        assert executed == [(False, True)]
        async with db.transaction() as conn:
            await conn.execute(text("DELETE FROM samples"))
            await conn.execute(insert(samples), SAMPLE_ROWS)
        assert in_place == by_driver == await _stored(db, "samples")
    finally:
        await db.dispose()
    assert executed == [(False, True), (True, True)]


async def test_rows_with_other_columns_are_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bulk.db'}")
    try:
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)
        with pytest.raises(ValueError, match="must have the columns"):
            async with db.transaction() as conn:
                await BulkInsert(samples, ["at", "ok", "note"])(conn, [{"at": NOW, "ok": True}])
    finally:
        await db.dispose()


async def test_an_upsert_overwrites_the_row_with_its_key_and_inserts_the_others(
    db: Database,
) -> None:
    columns = ["bot_id", "chat_id", "type", "title", "username", "updated_at"]
    upsert = BulkInsert(telegram_chats, columns, replace_conflicts_on=["bot_id", "chat_id"])
    first = {"bot_id": 1, "chat_id": -5, "type": "group", "title": "Ops", "username": None}
    async with db.transaction() as conn:
        await upsert(conn, [first | {"updated_at": NOW}])
    later = datetime(2026, 12, 7, tzinfo=UTC)
    async with db.transaction() as conn:
        await upsert(
            conn,
            [
                first | {"type": "supergroup", "title": "Ops!", "updated_at": later},
                first | {"chat_id": 9, "type": "private", "title": None, "updated_at": later},
            ],
        )
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(telegram_chats.c.chat_id, telegram_chats.c.type, telegram_chats.c.title)
            .add_columns(telegram_chats.c.updated_at)
            .order_by(telegram_chats.c.chat_id)
        )
        assert [tuple(row) for row in rows] == [
            (-5, "supergroup", "Ops!", later),
            (9, "private", None, later),
        ]
