"""How the updates worker shares the `serve` process with the webhook intake.

The process's Python runs on one core, and on SQLite the intake's writer and the worker take
turns at one write lock. The intake wants both in small pieces; a worker working off a
backlog wants them in large ones. `IntakeShare` decides from the intake's arrivals alone:

- while updates arrive faster than BURST_RATE, the worker pauses after each transaction for
  as long as it took, leaving the intake at least half of the process's time: acks stay
  prompt during a burst, and the backlog is worked off at full speed after it. Pausing at
  any arrival halved processing under a steady 1,000 updates/s (bench/soak.py), so below
  that rate the worker does not pause;
- while updates arrive at all, the worker's transactions aim at BUSY_TRANSACTION_SECONDS,
  the longest an ack should wait for the write lock; once nothing has arrived for
  QUIET_AFTER_SECONDS, at QUIET_TRANSACTION_SECONDS: nobody then waits for the lock, and
  fewer, larger transactions work a backlog off faster (bench/process.py, with an endpoint
  subscribed: 425 → 665 updates/s on one machine, within the hour);
- but when the worker is behind (its claim brought BEHIND_JOBS or more still to run) while
  updates arrive below BURST_RATE, it takes the long transactions too: a short one holds
  the lock for its fixed statements, stretched by the intake's requests on the same event
  loop (~25 ms for 16 updates at 1,000 arrivals/s), so short ones could not keep up with a
  steady 1,000/s and the backlog grew without end (bench/e2e.py). Acks then wait for the
  lock up to a long transaction, until the worker has caught up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

BURST_RATE = 3000.0  # updates/s
SHARE_PAUSE = 1.0  # the pause, per second the transaction took
BUSY_TRANSACTION_SECONDS = 0.005
QUIET_TRANSACTION_SECONDS = 0.05
QUIET_AFTER_SECONDS = 1.0
BEHIND_JOBS = 100  # jobs of the worker's claim still to run


class Arrivals(Protocol):
    arrived: int  # updates that arrived so far


class IntakeShare:
    """The updates worker's transaction budget and its pause after each transaction."""

    def __init__(
        self,
        intake: Arrivals,
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._intake = intake
        self._clock = clock or asyncio.get_running_loop().time
        self._sleep = sleep
        now = self._clock()
        self._last_look = (now, intake.arrived)  # the previous pause's reading
        self._last_arrival = (now, intake.arrived)  # when the count last moved
        self._bursting = False  # as the last pause found

    def transaction_seconds(self, waiting: int = 0) -> float:
        """How long the worker's next transaction should take, with `waiting` jobs of its
        claim still to run."""
        now, arrived = self._clock(), self._intake.arrived
        at, before = self._last_arrival
        if arrived != before:
            self._last_arrival = (now, arrived)
        elif now - at >= QUIET_AFTER_SECONDS:
            return QUIET_TRANSACTION_SECONDS
        behind = waiting >= BEHIND_JOBS and not self._bursting
        return QUIET_TRANSACTION_SECONDS if behind else BUSY_TRANSACTION_SECONDS

    def batches(self, most: int) -> int:
        """How many batches the worker may run at once: one while the intake is bursting
        (as the last pause found), else `most`. On PostgreSQL the updates worker runs
        several (app.py); during a burst they took the intake's time (bench/intake.py --db
        postgres: ~3,000 acks/s instead of ~5,000, p99 up to 290 ms)."""
        return 1 if self._bursting else most

    async def pause(self, took: float) -> None:
        """After a transaction that took `took` seconds: the intake's share, during a burst."""
        now, arrived = self._clock(), self._intake.arrived
        since, before = self._last_look
        self._last_look = (now, arrived)
        if now > since:
            self._bursting = (arrived - before) / (now - since) > BURST_RATE
        if self._bursting:
            await self._sleep(took * SHARE_PAUSE)
