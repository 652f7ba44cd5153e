"""The queue's depth per kind, read at scrape time: due pending jobs and the oldest's age,
on SQLite and PostgreSQL; and the plan that keeps the read off the done history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, text

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.observability import Metrics
from tgrelay.queue import depth

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _job(kind: str, state: str, run_at: datetime) -> dict[str, object]:
    return {
        "kind": kind,
        "payload": "{}",
        "state": state,
        "max_attempts": 5,
        "run_at": run_at,
        "created_at": run_at,
    }


async def test_depth_counts_due_pending_jobs_per_kind(database: Database) -> None:
    """Pending jobs due by now count, with the oldest's age; timers, running and done do not."""
    async with database.transaction() as conn:
        await conn.execute(
            insert(tables.jobs),
            [
                _job("process_update", "pending", NOW - timedelta(seconds=90)),
                _job("process_update", "pending", NOW - timedelta(seconds=5)),
                _job("process_update", "pending", NOW + timedelta(minutes=5)),  # a timer
                _job("deliver_event", "pending", NOW),
                _job("deliver_event", "running", NOW - timedelta(hours=1)),
                _job("send_alert", "done", NOW - timedelta(hours=2)),
            ],
        )
    async with database.engine.connect() as conn:
        found = await depth.by_kind(conn, now=NOW)
    assert found == [
        depth.KindDepth(kind="deliver_event", due=1, oldest_due_seconds=0.0),
        depth.KindDepth(kind="process_update", due=2, oldest_due_seconds=90.0),
    ]


def test_publish_sets_the_gauges_and_drops_kinds_with_nothing_due() -> None:
    """A kind whose backlog drained leaves the gauges instead of keeping its last value."""
    metrics = Metrics()
    depth.publish(
        metrics,
        [
            depth.KindDepth(kind="deliver_event", due=3, oldest_due_seconds=12.5),
            depth.KindDepth(kind="process_update", due=7, oldest_due_seconds=1.0),
        ],
    )
    depth.publish(metrics, [depth.KindDepth(kind="process_update", due=4, oldest_due_seconds=2.0)])
    sample = metrics.registry.get_sample_value
    assert [
        sample("tgrelay_queue_depth", {"kind": "process_update"}),
        sample("tgrelay_queue_oldest_due_age_seconds", {"kind": "process_update"}),
        sample("tgrelay_queue_depth", {"kind": "deliver_event"}),
        sample("tgrelay_queue_oldest_due_age_seconds", {"kind": "deliver_event"}),
    ] == [4.0, 2.0, None, None]


@pytest.fixture(params=[False, True], ids=["no-statistics", "analyzed"])
async def sqlite_history(request: pytest.FixtureRequest, tmp_path: object) -> Database:
    """A SQLite queue with a long done history of three kinds and a small backlog."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/depth.db")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
        await conn.execute(
            insert(tables.jobs),
            [
                _job(f"kind{n % 3}", "done" if n % 50 else "pending", NOW - timedelta(seconds=n))
                for n in range(5000)
            ],
        )
        if request.param:
            await conn.execute(text("ANALYZE"))
    return db


async def test_sqlite_depth_walks_the_due_range_of_the_state_index(
    sqlite_history: Database,
) -> None:
    """EXPLAIN: a search of ix_jobs_state_run_at (state, run_at), never a scan of every job;
    with ANALYZE's statistics SQLite would otherwise walk ix_jobs_kind_subject_id whole."""
    explain = text(f"EXPLAIN QUERY PLAN {depth.depth_by_kind(False).element!s}").bindparams(
        bindparam("now", type_=tables.jobs.c.run_at.type)
    )
    async with sqlite_history.engine.connect() as conn:
        steps = [row[3] for row in await conn.execute(explain, {"now": NOW})]
    await sqlite_history.dispose()
    assert steps == [
        "SEARCH jobs USING INDEX ix_jobs_state_run_at (state=? AND run_at<?)",
        "USE TEMP B-TREE FOR GROUP BY",
    ]


async def test_postgres_depth_can_use_the_state_index(postgres_database: Database) -> None:
    """EXPLAIN on PostgreSQL: with sequential scans priced out (the test table is tiny), the
    plan reads jobs through ix_jobs_state_run_at."""
    sql = str(depth.depth_by_kind(True).element).replace(":now", "now()")
    async with postgres_database.engine.connect() as conn:
        await conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(row[0] for row in await conn.execute(text(f"EXPLAIN {sql}")))
    assert "ix_jobs_state_run_at" in plan, plan
    assert "Seq Scan" not in plan, plan
