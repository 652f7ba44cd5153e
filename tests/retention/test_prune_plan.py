"""The pruner's batches reach their rows by primary key on SQLite, however many rows are kept.

SQLite's planner, without statistics (the hub never runs ANALYZE), took `state = 'done'` in
the jobs' condition as selective and searched ix_jobs_state_run_at instead of the batch's
ids: every batch read every done job kept (seven days of them by default) under the write
lock. The plan is checked, not timed: EXPLAIN QUERY PLAN names what each statement searches.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from tests.databases import migrated_sqlite
from tgrelay.db.engine import Database
from tgrelay.retention import prune

CUTOFF = datetime(2026, 6, 1, tzinfo=UTC)
BY_ID = "USING INTEGER PRIMARY KEY (rowid=?)"
SWEEPS = {
    "jobs": (prune._jobs(CUTOFF, CUTOFF), [f"SEARCH jobs {BY_ID}"] * 3),
    "done jobs only": (prune._jobs(CUTOFF, None), [f"SEARCH jobs {BY_ID}"] * 3),
    "updates": (prune._updates(CUTOFF), [f"SEARCH updates {BY_ID}"] * 3),
    "deliveries": (
        prune._deliveries(CUTOFF),
        [f"SEARCH deliveries {BY_ID}"] * 3
        + [
            "SEARCH delivery_attempts USING COVERING INDEX ix_delivery_attempts_delivery_id (delivery_id=?)"
        ],
    ),
    "audit": (prune._audit(CUTOFF), [f"SEARCH audit_log {BY_ID}"] * 3),
}


@pytest.mark.parametrize("name", SWEEPS)
async def test_each_batch_statement_searches_the_batch_ids(name: str, tmp_path: Path) -> None:
    sweep, expected = SWEEPS[name]
    await migrated_sqlite(tmp_path / "plan.db")
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'plan.db'}")
    statements = prune._Statements(sweep)
    ran: list[tuple[str, Any]] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def remember(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if sql.startswith(("SELECT", "DELETE")):  # not the connection's own BEGIN, PRAGMAs
            ran.append((sql, params))

    batch = {"ids": list(range(1, 101))}
    plans: list[str] = []
    async with db.engine.connect() as conn:  # outside the write lock: SQLAlchemy runs them
        for statement in (
            statements.doomed_ids,
            statements.delete_doomed,
            statements.delete_chosen,
            *statements.delete_dependents,
        ):
            await statement(conn, batch)
        for sql, params in list(ran):
            explained = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            details = [str(row["detail"]) for row in explained.mappings()]
            plans.append(next(d for d in details if d.startswith(("SEARCH", "SCAN"))))
        await conn.rollback()
    await db.dispose()

    assert plans == expected
