"""What processing tells operators once a batch of updates is processed: each update's lag
from stored to processed (`tgrelay_processing_lag_seconds`) and its "update.processed" span.

Observed after the batch's transaction commits, never before: a batch that rolls back is
run again, and its updates would otherwise be counted twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import engine as db_engine
from tgrelay.inbox.models import ProcessedUpdate
from tgrelay.runtime import Runtime


def after_processing(conn: AsyncConnection, rt: Runtime, batch: Sequence[ProcessedUpdate]) -> None:
    """Observe the batch's updates as processed once `conn`'s transaction commits."""
    if batch:
        db_engine.after_commit(conn, functools.partial(_observe, rt, batch))


def _observe(rt: Runtime, batch: Sequence[ProcessedUpdate]) -> None:
    now = rt.clock()
    lag = rt.metrics.processing_lag
    tracer = rt.tracer
    for update in batch:
        lag.observe(max((now - update.received_at).total_seconds(), 0.0))
        if tracer.enabled and update.trace_id is not None:
            tracer.record(
                "update.processed",
                trace_id=update.trace_id,
                start=update.received_at,
                end=now,
                attributes={"bot_id": update.bot_id, "update_id": update.update_id},
            )
