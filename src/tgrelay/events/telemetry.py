"""What the events domain tells operators: delivery attempts, their latency, dead letters,
open breakers (metrics), and "event.emitted" / "delivery.attempt" spans of update traces.

Counts that depend on a transaction (dead letters, emitted events) are taken after it
commits: a grouped commit that fails is retried one outcome at a time, and counting before
would count twice.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import breaker, tracing
from tgrelay.db import engine as db_engine
from tgrelay.db import tables
from tgrelay.events import schedule, store
from tgrelay.runtime import Runtime


def after_emitting(
    conn: AsyncConnection,
    rt: Runtime,
    rows: Sequence[store.NewEventRow],
    *,
    workspace_id: str,
    now: datetime,
) -> None:
    """Once `conn` commits: an "event.emitted" span per event of an update's trace."""
    if not rt.tracer.enabled:
        return
    traced = [(row.id, row.type, row.trace_id) for row in rows if row.trace_id is not None]
    if traced:
        db_engine.after_commit(conn, functools.partial(_emitted, rt, traced, workspace_id, now))


def _emitted(
    rt: Runtime, traced: list[tuple[str, str, str]], workspace_id: str, written: datetime
) -> None:
    committed = rt.clock()
    for event_id, event_type, trace_id in traced:
        rt.tracer.record(
            "event.emitted",
            trace_id=trace_id,
            start=written,
            end=committed,
            attributes={
                "event.id": event_id,
                "event.type": event_type,
                "workspace_id": workspace_id,
            },
        )


def attempt_span(
    rt: Runtime, target: store.Target
) -> contextlib.AbstractContextManager[str | None]:
    """A "delivery.attempt" span around a POST; yields its span id (None: no trace)."""
    if target.trace_id is None:
        return contextlib.nullcontext(None)
    return rt.tracer.span(
        "delivery.attempt",
        trace_id=target.trace_id,
        attributes={
            "event.id": target.delivery.event_id,
            "delivery.id": target.delivery.id,
            "endpoint.id": target.endpoint.id,
            "delivery.attempt": target.delivery.attempts + 1,
        },
    )


def headers_of(trace_id: str | None, span_id: str | None) -> dict[str, str]:
    """The W3C `traceparent` header of a delivery of a traced event (none otherwise)."""
    if trace_id is None or span_id is None:
        return {}
    return {tracing.TRACEPARENT: tracing.traceparent(trace_id, span_id)}


def attempted(rt: Runtime, outcome: schedule.Outcome, seconds: float) -> None:
    """One POST made (whatever its transaction comes to: the request went out)."""
    rt.metrics.delivery_attempts.labels(outcome.value).inc()
    rt.metrics.delivery_latency.observe(seconds)


def dead_lettered(conn: AsyncConnection, rt: Runtime, count: int) -> None:
    """Count `count` deliveries given up, once `conn` commits."""
    if count > 0:
        db_engine.after_commit(conn, functools.partial(rt.metrics.delivery_dead_letters.inc, count))


async def refresh_breakers_open(conn: AsyncConnection, rt: Runtime) -> None:
    """Set `tgrelay_delivery_breakers_open` from the endpoints table (shared by every worker
    process, so any process's scrape tells the same). Endpoints are few: a plain count."""
    count = await conn.scalar(_BREAKERS_OPEN)
    rt.metrics.delivery_breakers_open.set(int(count or 0))


_BREAKERS_OPEN = (
    select(func.count())
    .select_from(tables.endpoints)
    .where(
        tables.endpoints.c.deleted_at.is_(None),
        tables.endpoints.c.breaker_state != breaker.BreakerState.CLOSED.value,
    )
)
