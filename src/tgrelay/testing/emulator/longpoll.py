"""getUpdates long polling: at most one request waits per bot, and a newer one ends it."""

from __future__ import annotations

import asyncio
import enum


class Outcome(enum.StrEnum):
    """Why a waiting getUpdates stopped waiting."""

    WOKEN = "woken"  # something changed: new updates, a webhook, a revoked token
    TIMED_OUT = "timed_out"  # the request's timeout ran out
    TERMINATED = "terminated"  # a newer getUpdates arrived: this one answers 409
    CLOSED = "closed"  # the emulator is shutting down


class LongPolls:
    """Tracks the waiting getUpdates of each bot."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[Outcome]] = {}
        self._closed = False

    def waiting(self, bot_id: int) -> bool:
        """Whether a getUpdates of this bot is waiting right now."""
        return bot_id in self._waiting

    def preempt(self, bot_id: int) -> None:
        """A new getUpdates arrived: the one waiting (if any) is terminated."""
        self._finish(bot_id, Outcome.TERMINATED)

    def notify(self, bot_id: int) -> None:
        """Wake the bot's waiting getUpdates so it looks again."""
        self._finish(bot_id, Outcome.WOKEN)

    async def wait(self, bot_id: int, timeout: float) -> Outcome:
        """Wait until woken, terminated, closed or the timeout passes."""
        if self._closed:
            return Outcome.CLOSED
        self.preempt(bot_id)
        waiter: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[bot_id] = waiter
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except TimeoutError:
            return Outcome.TIMED_OUT
        finally:
            if self._waiting.get(bot_id) is waiter:
                del self._waiting[bot_id]

    def close(self) -> None:
        """End every wait; later waits return at once."""
        self._closed = True
        for bot_id in list(self._waiting):
            self._finish(bot_id, Outcome.CLOSED)

    def reopen(self) -> None:
        self._closed = False

    def _finish(self, bot_id: int, outcome: Outcome) -> None:
        waiter = self._waiting.pop(bot_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)
