"""SQLite's plan for a claim: along the state index, however long the jobs' history.

Left to itself SQLite's planner preferred the kind and ordering-key indexes, whose walk
grows with every job ever run. The plan is checked, not timed: EXPLAIN QUERY PLAN names
the index each table is searched by, with and without statistics from ANALYZE.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text
from sqlalchemy.dialects import sqlite

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.queue import store
from tgrelay.queue.models import ALL_KINDS, Lane

NOW = datetime(2030, 1, 1, tzinfo=UTC)
WEBHOOKS = frozenset({"deliver_event"})


@pytest.fixture(params=[False, True], ids=["no-statistics", "analyzed"])
async def sqlite_history(request: pytest.FixtureRequest, tmp_path: object) -> Database:
    """A SQLite queue with a long history of done jobs (keyed and not) and a few pending."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/plan.db")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)

        def row(n: int, state: str, kind: str, key: str | None) -> dict[str, object]:
            return {
                "kind": kind,
                "payload": "{}",
                "ordering_key": key,
                "subject_id": n,
                "state": state,
                "attempts": 1,
                "max_attempts": 5,
                "run_at": NOW - timedelta(seconds=n),
                "created_at": NOW,
            }

        history = [
            row(n, "done", *(("deliver_event", None) if n % 2 else ("update", f"chat:{n % 97}")))
            for n in range(5000)
        ]
        pending = [row(n, "pending", "deliver_event", None) for n in range(20)]
        pending += [row(n, "pending", "update", f"chat:{n}") for n in range(20)]
        await conn.execute(insert(tables.jobs), history + pending)
        if request.param:
            await conn.execute(text("ANALYZE"))
    return db


@pytest.mark.parametrize(
    "lane", [ALL_KINDS, Lane(only=WEBHOOKS), Lane(excluding=WEBHOOKS)], ids=str
)
async def test_claims_search_only_the_state_index(sqlite_history: Database, lane: Lane) -> None:
    query = store.candidates(NOW, 64, lane, hints=store.SQLITE_HINTS)
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    async with sqlite_history.engine.connect() as conn:
        plan = [row[3] for row in await conn.execute(text(f"EXPLAIN QUERY PLAN {sql}"))]
        claimable = (await conn.execute(text(sql))).all()
    await sqlite_history.dispose()

    searches = [step for step in plan if step.startswith(("SEARCH", "SCAN"))]
    assert searches == [
        "SEARCH candidate USING INDEX ix_jobs_state_run_at (state=? AND run_at<?)",
        "SEARCH unfinished USING INDEX ix_jobs_state_run_at (state=?)",
    ], plan
    expected = {ALL_KINDS: 40, Lane(only=WEBHOOKS): 20, Lane(excluding=WEBHOOKS): 20}[lane]
    assert len(claimable) == expected
