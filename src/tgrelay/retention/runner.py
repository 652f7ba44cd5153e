"""The pruner: a round of `prune` every interval, run by one process at a time.

Every process that runs a worker starts one; the lease "retention" (db.leases) picks which
of them prunes. The holder renews it before each round and, in a long round, between
batches; a holder that dies stops renewing and another takes over once it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError

from tgrelay.clock import Clock
from tgrelay.db import leases
from tgrelay.db.engine import Database
from tgrelay.retention import prune
from tgrelay.retention.policy import Policy

log = structlog.get_logger(__name__)

LEASE = "retention"
# The lease outlives a few intervals, so the holder keeps it from round to round; a dead
# holder's rounds resume elsewhere after at most this long.
MIN_LEASE_SECONDS = 90.0
LEASE_INTERVALS = 3
# A batch holding the write lock longer than this is logged: the budget is ~50 ms.
SLOW_BATCH_SECONDS = 0.05

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Round:
    """What one round did."""

    holder: str
    now: datetime  # the instant ages were measured from
    deleted: Mapping[str, int]  # rows per table
    complete: bool  # False when the lease was lost midway and the round stopped


def holder_name() -> str:
    """This process among others, for the lease: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Pruner:
    """Runs `prune` rounds while it holds the retention lease."""

    def __init__(
        self,
        db: Database,
        policy: Policy,
        *,
        clock: Clock,
        sleep: Sleep,
        interval_seconds: float,
        holder: str | None = None,
        batch_size: int = prune.BATCH_SIZE,
        pause_seconds: float = prune.PAUSE_SECONDS,
        on_round: Callable[[Round], None] | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self._db = db
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._interval = interval_seconds
        self.holder = holder or holder_name()
        self._batch_size = batch_size
        self._pause = pause_seconds
        self._on_round = on_round
        self.lease_seconds = max(MIN_LEASE_SECONDS, LEASE_INTERVALS * interval_seconds)
        self._stopping = False  # cancelled: the round in progress ends at its next batch

    async def run(self) -> None:
        """Prune every interval until cancelled; a database outage is logged and waited out.

        A cancellation never lands inside a round's statements: cancelling a task in the
        middle of an asyncpg statement can leave its connection waiting for an answer that
        never comes (a test hung there). The round stops at its next batch instead, and the
        cancellation goes on from there.
        """
        try:
            while True:
                current = asyncio.ensure_future(self._guarded_round())
                try:
                    await asyncio.shield(current)
                except asyncio.CancelledError:
                    self._stopping = True
                    await current
                    raise
                await self._sleep(self._interval)
        finally:
            with contextlib.suppress(Exception):
                await leases.release(self._db, LEASE, holder=self.holder)

    async def _guarded_round(self) -> None:
        try:
            await self.run_once()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("retention.round_failed", error=type(exc).__name__)

    async def run_once(self) -> Round | None:
        """One round if this pruner holds (or takes) the lease; None when another holds it."""
        if not await self._acquire():
            return None
        now = self._clock()
        renewed_at = now
        lost = False

        async def between() -> bool:
            nonlocal renewed_at, lost
            if self._stopping:
                return False
            await self._sleep(self._pause)
            current = self._clock()
            if current - renewed_at >= timedelta(seconds=self.lease_seconds / LEASE_INTERVALS):
                if not await self._acquire():
                    lost = True
                    return False
                renewed_at = current
            return True

        deleted = await prune.prune(
            self._db,
            self.policy,
            now=now,
            batch_size=self._batch_size,
            between=between,
            observe=_log_slow,
        )
        done = Round(holder=self.holder, now=now, deleted=deleted, complete=not lost)
        if any(deleted.values()) or lost:
            log.info("retention.pruned", complete=done.complete, **deleted)
        if self._on_round is not None:
            self._on_round(done)
        return done

    async def _acquire(self) -> bool:
        return await leases.acquire(
            self._db, LEASE, holder=self.holder, now=self._clock(), ttl=self.lease_seconds
        )


def _log_slow(batch: prune.Batch) -> None:
    if batch.seconds > SLOW_BATCH_SECONDS:
        log.warning(
            "retention.slow_batch",
            table=batch.table,
            milliseconds=round(batch.seconds * 1000, 1),
            **batch.deleted,
        )
