"""Periodic tasks: a round every interval, run by one process at a time, chosen by a lease.

Every process that runs a worker starts each periodic task; the lease named after the task
(db.leases) picks which of them runs its rounds. The holder renews it before each round and,
in a long round, whenever the round asks (`HeldLease.still_held`); a holder that dies stops
renewing and another takes over once the lease expires. A task waiting for its next round
holds no job, so it costs the queue's claims nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError

from tgrelay.clock import Clock
from tgrelay.db import leases
from tgrelay.db.engine import Database

log = structlog.get_logger(__name__)

# The lease outlives a few intervals, so the holder keeps it from round to round; a dead
# holder's rounds resume elsewhere after at most this long.
MIN_LEASE_SECONDS = 90.0
LEASE_INTERVALS = 3

Sleep = Callable[[float], Awaitable[None]]


def holder_name() -> str:
    """This process among others, for a lease: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class HeldLease:
    """The lease as a round sees it: a long round asks between steps whether to go on."""

    def __init__(self, task: Periodic) -> None:
        self._task = task
        self._renewed_at = task.clock()
        self.lost = False

    async def still_held(self) -> bool:
        """False when the round should stop: the task is being cancelled, or another process
        holds the lease now. Renews it once a share of its time has passed."""
        task = self._task
        if task.stopping or self.lost:
            return False
        now = task.clock()
        if now - self._renewed_at >= timedelta(seconds=task.lease_seconds / LEASE_INTERVALS):
            if not await task.acquire():
                self.lost = True
                return False
            self._renewed_at = now
        return True


Work = Callable[[HeldLease], Awaitable[None]]  # one round of a task


class Periodic:
    """Runs `work` every `interval_seconds` while this process holds the lease `name`."""

    def __init__(
        self,
        db: Database,
        name: str,
        work: Work,
        *,
        interval_seconds: float,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        holder: str | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self._db = db
        self.name = name
        self._work = work
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._sleep = sleep
        self.holder = holder or holder_name()
        self.lease_seconds = max(MIN_LEASE_SECONDS, LEASE_INTERVALS * interval_seconds)
        self.stopping = False  # cancelled: the round in progress ends at its next step

    async def run(self) -> None:
        """A round every interval until cancelled; a database outage is logged and waited out.

        A cancellation never lands inside a round's statements: cancelling a task in the
        middle of an asyncpg statement can leave its connection waiting for an answer that
        never comes. The round stops at its next `still_held` instead, and the cancellation
        goes on from there; the lease is released for another process to take at once.
        """
        try:
            while True:
                current = asyncio.ensure_future(self._guarded_round())
                try:
                    await asyncio.shield(current)
                except asyncio.CancelledError:
                    self.stopping = True
                    await current
                    raise
                await self._sleep(self.interval_seconds)
        finally:
            with contextlib.suppress(Exception):
                await leases.release(self._db, self.name, holder=self.holder)

    async def run_once(self) -> HeldLease | None:
        """One round if this process holds (or takes) the lease: the lease as the round left
        it (`lost` when another took it midway); None when another holds it."""
        if not await self.acquire():
            return None
        lease = HeldLease(self)
        await self._work(lease)
        return lease

    async def acquire(self) -> bool:
        return await leases.acquire(
            self._db, self.name, holder=self.holder, now=self.clock(), ttl=self.lease_seconds
        )

    async def _guarded_round(self) -> None:
        try:
            await self.run_once()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("periodic.round_failed", task=self.name, error=type(exc).__name__)
