"""What processing tells operators once a batch of updates is processed: each update's lag
from stored to processed (`tgrelay_processing_lag_seconds`) and its "update.processed" span.

Observed after the batch's transaction commits, never before: a batch that rolls back is
run again, and its updates would otherwise be counted twice.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import engine as db_engine
from tgrelay.inbox.models import ProcessedUpdate
from tgrelay.runtime import Runtime


@dataclass(frozen=True, kw_only=True)
class _Processed:
    bot_id: int
    update_id: int
    received_at: datetime
    trace_id: str | None


def after_processing(conn: AsyncConnection, rt: Runtime, batch: Sequence[ProcessedUpdate]) -> None:
    """Observe the batch's updates as processed once `conn`'s transaction commits."""
    if not batch:
        return
    processed = [
        _Processed(
            bot_id=p.bot_id, update_id=p.update_id, received_at=p.received_at, trace_id=p.trace_id
        )
        for p in batch
    ]
    db_engine.after_commit(conn, functools.partial(_observe, rt, processed))


def _observe(rt: Runtime, batch: Sequence[_Processed]) -> None:
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
