"""The queue's depth per job kind, read at scrape time: due pending jobs and how long the
oldest of them has been due (`tgrelay_queue_depth`, `tgrelay_queue_oldest_due_age_seconds`).

A read, never a write: it takes no lock a claim waits for (SQLite WAL readers and
PostgreSQL snapshots do not block writers). It walks ix_jobs_state_run_at over the due
pending range only, so timers far in the future cost it nothing
(tests/queue/test_depth.py checks the plan on both databases).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import tables
from tgrelay.observability import Metrics
from tgrelay.queue.models import JobState

jobs = tables.jobs


@dataclass(frozen=True, kw_only=True)
class KindDepth:
    kind: str
    due: int  # pending jobs whose run_at has come (waiting for a predecessor included)
    oldest_due_seconds: float  # since the oldest of them became due


DEPTH_BY_KIND = (
    select(jobs.c.kind, func.count(), func.min(jobs.c.run_at))
    .where(jobs.c.state == JobState.PENDING.value, jobs.c.run_at <= bindparam("now"))
    .group_by(jobs.c.kind)
)


async def by_kind(conn: AsyncConnection, *, now: datetime) -> list[KindDepth]:
    """Each kind with due pending jobs, by kind name."""
    rows = await conn.execute(DEPTH_BY_KIND, {"now": now})
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
