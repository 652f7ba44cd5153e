"""Which secrets the webhook route accepts per bot, cached briefly to keep the hot path lean.

A cached answer can be at most `TTL_SECONDS` old: a rotation keeps the previous secret valid
for a grace period far longer than that, and a disconnected bot's late updates are simply
stored and then ignored by processing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tgrelay.bots import service as bots_service
from tgrelay.runtime import Runtime

TTL_SECONDS = 2.0
# Requests for made-up bot ids are cached too (as None); past this size, expired entries go.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, kw_only=True)
class Accepted:
    """What the intake needs of a bot: its workspace and the secrets it accepts, as bytes."""

    workspace_id: str
    secrets: tuple[bytes, ...]


class CredentialCache:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._entries: dict[int, tuple[float, Accepted | None]] = {}
        self._loading: dict[int, asyncio.Future[Accepted | None]] = {}

    def forget(self, bot_id: int) -> None:
        """Drop a bot's cached secrets (its secret was rotated in this process)."""
        self._entries.pop(bot_id, None)

    async def get(self, bot_id: int) -> Accepted | None:
        entry = self._entries.get(bot_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        loading = self._loading.get(bot_id)
        if loading is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[Accepted | None] = asyncio.get_running_loop().create_future()
        self._loading[bot_id] = future
        try:
            found = await bots_service.intake_credentials(self._rt, bot_id)
            credentials = (
                None
                if found is None
                else Accepted(
                    workspace_id=found.workspace_id,
                    secrets=tuple(secret.encode() for secret in found.secrets),
                )
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[bot_id]
        future.set_result(credentials)
        now = time.monotonic()
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[bot_id] = (now + TTL_SECONDS, credentials)
        return credentials
