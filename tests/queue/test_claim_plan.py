"""The plan for a claim: along ix_jobs_ready, however long the jobs' history.

Left to itself SQLite's planner preferred indexes whose walk grows with every job ever run
(or with the backlog). The plan is checked, not timed: EXPLAIN QUERY PLAN names the index
each table is searched by, with and without statistics from ANALYZE.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import TextClause, insert, text

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.queue import chains, store
from tgrelay.queue.models import NewJob

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(params=[False, True], ids=["no-statistics", "analyzed"])
async def sqlite_history(request: pytest.FixtureRequest, tmp_path: object) -> Database:
    """A SQLite queue with a long history of done jobs and a backlog behind a few keys."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/plan.db")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
        history = [
            {
                "kind": "update",
                "payload": "{}",
                "ordering_key": f"chat:{n % 97}",
                "state": "done",
                "max_attempts": 5,
                "run_at": NOW - timedelta(seconds=n),
                "created_at": NOW,
            }
            for n in range(5000)
        ]
        await conn.execute(insert(tables.jobs), history)
        backlog = [
            NewJob(kind="update", payload={}, ordering_key=f"chat:{n % 5}") for n in range(200)
        ]
        await store.enqueue(conn, backlog, now=NOW, default_max_attempts=5)
        if request.param:
            await conn.execute(text("ANALYZE"))
    return db


async def _plan(db: Database, statement: TextClause, params: dict[str, Any]) -> list[str]:
    # The same text and typed parameters (expanding lists included), explained.
    explain = text(f"EXPLAIN QUERY PLAN {statement.text}").bindparams(
        *statement._bindparams.values()
    )
    async with db.engine.connect() as conn:
        rows = await conn.execute(explain, params)
        return [row[3] for row in rows if row[3].startswith(("SEARCH", "SCAN"))]


async def test_claim_candidates_walk_the_ready_index(sqlite_history: Database) -> None:
    plan = await _plan(
        sqlite_history, store.candidates(False), {"queue": "default", "now": NOW, "window": 32}
    )
    await sqlite_history.dispose()
    assert plan == [
        "SEARCH c USING INDEX ix_jobs_ready (queue=? AND run_at<?)",
        "SEARCH p USING INTEGER PRIMARY KEY (rowid=?)",
    ]


async def test_runs_follow_the_successor_index(sqlite_history: Database) -> None:
    params = {"queue": "default", "now": NOW, "heads": [1], "kinds": ["update"], "max_jobs": 9}
    params["max_rows"] = 10
    plan = await _plan(sqlite_history, store.followers(False), params)
    await sqlite_history.dispose()
    assert "SEARCH j USING INDEX ix_jobs_after_id (after_id=?)" in plan, plan
    assert not [step for step in plan if step.startswith("SCAN") and "run" not in step], plan


async def test_freeing_successors_follows_the_successor_index(sqlite_history: Database) -> None:
    # Its `state = 'pending'` term drew the planner to ix_jobs_state_run_at: every pending job.
    plan = await _plan(sqlite_history, chains.FREE_SQLITE, {"finished": [1, 2, 3]})
    await sqlite_history.dispose()
    assert plan == ["SEARCH jobs USING INDEX ix_jobs_after_id (after_id=?)"], plan


@pytest.mark.postgres
async def test_postgres_runs_follow_the_successor_index_after_a_burst(
    postgres_database: Database,
) -> None:
    """A burst lands after the statistics were taken (autovacuum analyzes a minute later,
    at best): each step of a run still finds the successor by ix_jobs_after_id. Planned
    from those statistics, the step used to scan every pending job (237 ms a claim with
    10,000 jobs of one chat queued)."""
    db = postgres_database
    async with db.transaction() as conn:
        await conn.execute(text("ANALYZE jobs"))  # statistics of an empty queue
        burst = [NewJob(kind="update", payload={}, ordering_key="chat:1") for _ in range(3000)]
        await store.enqueue(conn, burst, now=NOW, default_max_attempts=5)
        head = await conn.scalar(text("SELECT min(id) FROM jobs"))
    statement = store.followers(True)
    explain = text(f"EXPLAIN {statement.text}").bindparams(*statement._bindparams.values())
    params = {"queue": "default", "now": NOW, "heads": [head], "kinds": ["update"]}
    async with db.engine.connect() as conn:
        rows = await conn.execute(explain, params | {"max_jobs": 100, "max_rows": 101})
        plan = "\n".join(row[0] for row in rows)
    step = plan[plan.index("WorkTable Scan") :]
    assert "ix_jobs_after_id" in step, plan
    assert "ix_jobs_state_run_at" not in step, plan
    assert "ix_jobs_kind_subject_id" not in step, plan
    assert "Seq Scan on jobs" not in step, plan
