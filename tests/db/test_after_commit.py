"""`engine.after_commit` on both databases: callbacks run once their transaction commits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tgrelay.db import engine, tables
from tgrelay.db.engine import Database

FAR = datetime(2100, 1, 1, tzinfo=UTC)


async def fail_after_registering(db: Database, callback: Callable[[], None]) -> None:
    async with db.transaction() as conn:
        engine.after_commit(conn, callback)
        raise RuntimeError("rolled back")


async def test_callbacks_run_after_commit_and_never_after_rollback(db: Database) -> None:
    """A committed transaction's callbacks run once each, in order, after the commit; those of
    a rolled-back one never run, not even when a later transaction reuses its connection."""
    called: list[str] = []
    with pytest.raises(RuntimeError, match="rolled back"):
        await fail_after_registering(db, lambda: called.append("rolled back"))
    async with db.transaction() as conn:
        await conn.execute(tables.leases.insert().values(name="a", holder="h", expires_at=FAR))
        engine.after_commit(conn, lambda: called.append("first"))
        engine.after_commit(conn, lambda: called.append("second"))
        before_commit = list(called)
    after_commit = list(called)
    async with db.transaction() as conn:
        await conn.execute(select(tables.leases.c.name))
    async with db.engine.connect() as conn:
        stored = list((await conn.execute(select(tables.leases.c.name))).scalars())
    assert (before_commit, after_commit, called, stored) == (
        [],
        ["first", "second"],
        ["first", "second"],
        ["a"],
    )
