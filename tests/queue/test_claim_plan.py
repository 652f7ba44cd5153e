"""The plan for a claim: along ix_jobs_ready, however long the jobs' history.

Left to itself SQLite's planner preferred indexes whose walk grows with every job ever run
(or with the backlog). The plan is checked, not timed: EXPLAIN QUERY PLAN names the index
each table is searched by, with and without statistics from ANALYZE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import TextClause, insert, text

from tests.databases import PostgresServer
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.queue import chains, store
from tgrelay.queue.models import NewJob
from tgrelay.settings import async_database_url

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


@pytest.fixture
async def postgres_after_burst(
    postgres: PostgresServer, postgres_template: str | None
) -> AsyncIterator[tuple[Database, int]]:
    """Three chats' jobs in a burst that landed after the statistics were taken
    (autovacuum analyzes a minute later, at best); the first job's id. A database of its
    own, so that its statistics reach no other test's plans."""
    async with postgres.fresh_database(template=postgres_template) as url:
        db = Database(async_database_url(url))
        async with db.transaction() as conn:
            await conn.execute(text("ANALYZE jobs"))  # statistics of an empty queue
            burst = [
                NewJob(kind="update", payload={}, ordering_key=f"chat:{n % 3}") for n in range(3000)
            ]
            await store.enqueue(conn, burst, now=NOW, default_max_attempts=5)
            head = await conn.scalar(text("SELECT min(id) FROM jobs"))
        try:
            yield db, int(head)
        finally:
            await db.dispose()


async def _postgres_plan(db: Database, statement: TextClause, params: dict[str, Any]) -> str:
    explain = text(f"EXPLAIN {statement.text}").bindparams(*statement._bindparams.values())
    async with db.engine.connect() as conn:
        return "\n".join(row[0] for row in await conn.execute(explain, params))


def _no_walk_of_pending_jobs(plan: str) -> None:
    assert "ix_jobs_state_run_at" not in plan, plan
    assert "ix_jobs_kind_subject_id" not in plan, plan
    assert "Seq Scan on jobs" not in plan, plan


@pytest.mark.postgres
async def test_postgres_runs_follow_the_successor_index_after_a_burst(
    postgres_after_burst: tuple[Database, int],
) -> None:
    """Each step of a run finds the successor by ix_jobs_after_id. Planned from the old
    statistics, the step used to scan every pending job (237 ms a claim with 10,000 jobs
    of one chat queued)."""
    db, head = postgres_after_burst
    params = {"queue": "default", "now": NOW, "heads": [head], "kinds": ["update"]}
    plan = await _postgres_plan(
        db, store.followers(True), params | {"max_jobs": 100, "max_rows": 101}
    )
    step = plan[plan.index("WorkTable Scan") :]
    assert "ix_jobs_after_id" in step, plan
    _no_walk_of_pending_jobs(step)


@pytest.mark.postgres
async def test_postgres_freeing_and_blocking_look_jobs_up_by_id_after_a_burst(
    postgres_after_burst: tuple[Database, int],
) -> None:
    """Freeing successors finds them by ix_jobs_after_id, and blocking checks each
    predecessor by its id: neither walks the pending jobs (both did, planned from the old
    statistics)."""
    db, head = postgres_after_burst
    freeing = await _postgres_plan(db, chains._FREE_POSTGRES, {"finished": [head, head + 1]})
    assert "ix_jobs_after_id" in freeing, freeing
    _no_walk_of_pending_jobs(freeing)
    blocking = await _postgres_plan(db, store.block(True), {"ids": [head + 4, head + 5, head + 6]})
    assert "Index Cond: (id = jobs.after_id)" in blocking, blocking
    _no_walk_of_pending_jobs(blocking)
