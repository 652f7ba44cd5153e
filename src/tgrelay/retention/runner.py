"""The pruner: a round of `prune` every interval, as the periodic task "retention".

Every process that runs a worker starts one; the lease (queue/periodic.py) picks which of
them prunes, and a long round checks between batches that it still holds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from tgrelay.clock import Clock
from tgrelay.db.engine import Database, writing_as
from tgrelay.queue import periodic
from tgrelay.retention import prune
from tgrelay.retention.policy import Policy

log = structlog.get_logger(__name__)

LEASE = "retention"
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
        self._db = db
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._batch_size = batch_size
        self._pause = pause_seconds
        self._on_round = on_round
        self._sizes: dict[str, int] = {}  # each table's next batch, from round to round
        self._last: Round | None = None
        self._task = periodic.Periodic(
            db,
            LEASE,
            self._prune,
            interval_seconds=interval_seconds,
            clock=clock,
            sleep=sleep,
            holder=holder,
        )
        self.holder = self._task.holder
        self.lease_seconds = self._task.lease_seconds

    async def run(self) -> None:
        """Prune every interval until cancelled (`Periodic.run`)."""
        with writing_as("retention"):  # its batches, as the write-lock metric tells them
            await self._task.run()

    async def run_once(self) -> Round | None:
        """One round if this pruner holds (or takes) the lease; None when another holds it."""
        self._last = None
        await self._task.run_once()
        return self._last

    def pause_after(self, batch: prune.Batch) -> float:
        """How long to leave the write lock to others after `batch`."""
        return max(self._pause, batch.seconds * prune.PAUSE_PER_HOLD)

    async def _prune(self, lease: periodic.HeldLease) -> None:
        now = self._clock()

        async def between(batch: prune.Batch) -> bool:
            if self._task.stopping:
                return False
            await self._sleep(self.pause_after(batch))
            return await lease.still_held()

        deleted = await prune.prune(
            self._db,
            self.policy,
            now=now,
            batch_size=self._batch_size,
            between=between,
            observe=_log_slow,
            sizes=self._sizes,
        )
        done = Round(holder=self.holder, now=now, deleted=deleted, complete=not lease.lost)
        if any(deleted.values()) or lease.lost:
            log.info("retention.pruned", complete=done.complete, **deleted)
        self._last = done
        if self._on_round is not None:
            self._on_round(done)


def _log_slow(batch: prune.Batch) -> None:
    if batch.seconds > SLOW_BATCH_SECONDS:
        log.warning(
            "retention.slow_batch",
            table=batch.table,
            milliseconds=round(batch.seconds * 1000, 1),
            **batch.deleted,
        )
