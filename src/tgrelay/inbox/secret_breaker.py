"""Webhook secrets as circuit breakers: a bot flooded with forged requests gets a new secret.

The receiver counts each known bot's requests with a wrong or missing secret per minute
(inbox.rejections); the request that takes a bot past `forged_rotate_threshold` trips this
breaker, which rotates the secret in a task of its own (setWebhook, a database transaction)
so the intake's answer never waits for it. One rotation per bot at a time; whether a bot
may be rotated at all is `bots.rules.may_rotate_secret`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from tgrelay.bots import service as bots_service
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)


class SecretBreaker:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.threshold = rt.settings.forged_rotate_threshold
        self._rotating: dict[int, asyncio.Task[None]] = {}

    def count(
        self, bot_id: int, forged_this_minute: int, *, rotated: Callable[[int], None]
    ) -> None:
        """Trip on the request that takes a bot past the threshold; `rotated(bot_id)` follows
        a rotation (the receiver forgets the bot's cached secrets)."""
        if forged_this_minute != self.threshold + 1 or bot_id in self._rotating:
            return
        task = asyncio.create_task(
            self._rotate(bot_id, forged_this_minute, rotated), name=f"rotate-secret-{bot_id}"
        )
        self._rotating[bot_id] = task
        task.add_done_callback(lambda _: self._rotating.pop(bot_id, None))

    async def close(self) -> None:
        """Let rotations under way finish: Telegram may already hold the new secret."""
        await asyncio.gather(*self._rotating.values(), return_exceptions=True)

    async def _rotate(self, bot_id: int, forged: int, rotated: Callable[[int], None]) -> None:
        try:
            done = await bots_service.rotate_secret_after_forgery(
                self._rt, bot_id, forged_requests=forged
            )
        except Exception:  # a failed rotation must not end the process; the next minute retries
            log.exception("bot.secret_rotation_error", bot_id=bot_id)
            return
        if done is not None:
            rotated(bot_id)
