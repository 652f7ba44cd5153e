"""The queue's depth per job kind, read at scrape time: due pending jobs and how long the
oldest of them has been due (`tgrelay_queue_depth`, `tgrelay_queue_oldest_due_age_seconds`).

A read, never a write: it takes no lock a claim waits for (SQLite WAL readers and
PostgreSQL snapshots do not block writers). It walks ix_jobs_state_run_at over the due
pending range only, so timers far in the future cost it nothing
(tests/queue/test_depth.py checks the plan on both databases).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect

from tgrelay.db import tables
from tgrelay.observability import Metrics

jobs = tables.jobs


@dataclass(frozen=True, kw_only=True)
class KindDepth:
    kind: str
    due: int  # pending jobs whose run_at has come (waiting for a predecessor included)
    oldest_due_seconds: float  # since the oldest of them became due


# Built from constants only. The state term is the index's first column: the walk covers the
# pending rows due by now, never the done history or future timers.
DEPTH_SQL = (
    "SELECT kind, count(*) AS due, min(run_at) AS oldest FROM jobs{hint}"
    " WHERE state = 'pending' AND run_at <= :now GROUP BY kind"
)


@functools.cache
def depth_by_kind(postgres: bool) -> TextualSelect:
    # SQLite: with ANALYZE statistics its planner preferred walking all of ix_jobs_kind_subject_id
    # (every job ever kept) to save the GROUP BY's sort; INDEXED BY keeps it on the due range.
    sql = DEPTH_SQL.format(hint="" if postgres else " INDEXED BY ix_jobs_state_run_at")
    return (
        text(sql)
        .bindparams(bindparam("now", type_=jobs.c.run_at.type))
        .columns(kind=String(), due=Integer(), oldest=jobs.c.run_at.type)
    )


async def by_kind(conn: AsyncConnection, *, now: datetime) -> list[KindDepth]:
    """Each kind with due pending jobs, by kind name."""
    rows = await conn.execute(depth_by_kind(conn.dialect.name == "postgresql"), {"now": now})
    return sorted(
        (
            KindDepth(
                kind=kind,
                due=int(count),
                oldest_due_seconds=max((now - oldest).total_seconds(), 0.0),
            )
            for kind, count, oldest in rows
        ),
        key=lambda depth: depth.kind,
    )


def publish(metrics: Metrics, depths: list[KindDepth]) -> None:
    """Set the gauges to `depths`: a kind with nothing due drops out (no stale values)."""
    metrics.queue_depth.clear()
    metrics.queue_oldest_due_age.clear()
    for depth in depths:
        metrics.queue_depth.labels(depth.kind).set(depth.due)
        metrics.queue_oldest_due_age.labels(depth.kind).set(depth.oldest_due_seconds)
