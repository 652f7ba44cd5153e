"""Turns at SQLite's one write lock within a process: work already accepted goes first.

A process's write transactions queue here rather than on SQLite's busy handler. In arrival
order, a burst of API writes (hundreds of `POST /v1/notifications`) put every transaction of
the worker behind tens of them: on bench/alerts.py each waited ~85 ms, a send job runs four
or five in turn, and sends missed the rate-limit slots they had reserved. So transactions
opened under `ahead()` (the worker's) are served first, yet never more than
MAX_AHEAD_STREAK times in a row while others wait: new requests slow down, never stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Iterator

MAX_AHEAD_STREAK = 4

_ahead: contextvars.ContextVar[bool] = contextvars.ContextVar("tgrelay_write_ahead", default=False)


@contextlib.contextmanager
def ahead() -> Iterator[None]:
    """Write transactions opened in this block, and in tasks started from it, queue first."""
    token = _ahead.set(True)
    try:
        yield
    finally:
        _ahead.reset(token)


class WriteTurns:
    """A lock whose waiters from `ahead()` blocks are served before the others."""

    def __init__(self, *, max_ahead_streak: int = MAX_AHEAD_STREAK) -> None:
        if max_ahead_streak < 1:
            raise ValueError("max_ahead_streak must be at least 1")
        self._max_ahead_streak = max_ahead_streak
        self._busy = False  # stays True while the turn passes from one holder to the next
        self._waiting: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._streak = 0  # turns given ahead in a row while others waited

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold the turn for the block; whether it queues ahead is the caller's context."""
        await self._acquire(_ahead.get())
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, first: bool) -> None:
        if not self._busy:  # nobody waits while it is free: a release hands the turn on
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        queue = self._waiting[first]
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # a release may have skipped it already
                    queue.remove(waiter)
            else:  # given the turn as it was cancelled: pass it on
                self._release()
            raise

    def _release(self) -> None:
        while (waiter := self._next()) is not None:
            if not waiter.done():  # cancelled ones leave the queue when their task resumes
                waiter.set_result(None)
                return
        self._busy = False

    def _next(self) -> asyncio.Future[None] | None:
        first, others = self._waiting[True], self._waiting[False]
        if first and (not others or self._streak < self._max_ahead_streak):
            self._streak = self._streak + 1 if others else 0
            return first.popleft()
        self._streak = 0
        return others.popleft() if others else None
