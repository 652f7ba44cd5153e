"""Which secrets the webhook route accepts per bot, cached briefly to keep the hot path lean.

A cached answer can be at most `TTL_SECONDS` old: a rotation keeps the previous secret valid
for a grace period far longer than that, and a disconnected bot's late updates are simply
stored and then ignored by processing.
"""

from __future__ import annotations

import asyncio
import time

from tgrelay.bots import service as bots_service
from tgrelay.runtime import Runtime

TTL_SECONDS = 2.0


class CredentialCache:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._entries: dict[int, tuple[float, bots_service.IntakeCredentials | None]] = {}
        self._loading: dict[int, asyncio.Future[bots_service.IntakeCredentials | None]] = {}

    async def get(self, bot_id: int) -> bots_service.IntakeCredentials | None:
        entry = self._entries.get(bot_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        loading = self._loading.get(bot_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[bots_service.IntakeCredentials | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._loading[bot_id] = future
        try:
            credentials = await bots_service.intake_credentials(self._rt, bot_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[bot_id]
        future.set_result(credentials)
        self._entries[bot_id] = (time.monotonic() + TTL_SECONDS, credentials)
        return credentials
