"""The intake's tally of rejected webhook requests: audit rows per minute, not per request.

A forged request costs the intake a dict update here; every `FLUSH_SECONDS` (and once at
shutdown) the tally hands the group-commit writer one audit entry per (bot, reason, source
address, minute) that changed since the last flush, and the writer adds each entry's count
to its row (the entry's `aggregate_key` finds it). So a flood grows the audit table by at
most `MAX_ROWS_PER_MINUTE` rows a minute per process, whatever its rate: beyond that many
distinct keys in a minute, the rest fold into one row per reason with no bot and no address.

It also counts each known bot's forged requests (401) per minute, for the breaker that
rotates a bot's webhook secret (inbox.secret_breaker).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from tgrelay import audit

FLUSH_SECONDS = 2.0
# ~300 bytes per row with its index entries (bench/forged.py measures it): 1,000 rows are
# ~0.3 MB, within the 1 MB a minute with room for a second serving process.
MAX_ROWS_PER_MINUTE = 1000
ACTION = "intake.rejected"


@dataclass(frozen=True)
class _Key:
    minute: datetime
    bot_id: int | None
    workspace_id: str | None  # the bot's workspace, if we serve it; None keeps the row hidden
    status: int
    reason: str
    remote_addr: str | None


class RejectionTally:
    """Counts of rejected requests per key, for the minute in progress and the one before."""

    def __init__(self, *, max_rows_per_minute: int = MAX_ROWS_PER_MINUTE) -> None:
        self._max_rows = max_rows_per_minute
        self._unflushed: dict[_Key, int] = {}
        self._minute: datetime | None = None
        self._keys_this_minute: set[_Key] = set()
        self._forged_this_minute: dict[int, int] = {}

    def add(
        self,
        *,
        now: datetime,
        bot_id: int | None,
        workspace_id: str | None,
        status: int,
        reason: str,
        remote_addr: str | None,
        forged: bool,
    ) -> int:
        """Count one rejection; the bot's forged requests this minute (0 unless `forged`)."""
        minute = now.replace(second=0, microsecond=0)
        if minute != self._minute:
            self._minute = minute
            self._keys_this_minute = set()
            self._forged_this_minute = {}
        key = _Key(minute, bot_id, workspace_id, status, reason, remote_addr)
        if key not in self._keys_this_minute:
            if len(self._keys_this_minute) >= self._max_rows:
                key = _Key(minute, None, None, status, reason, None)
            self._keys_this_minute.add(key)
        self._unflushed[key] = self._unflushed.get(key, 0) + 1
        if not forged or bot_id is None:
            return 0
        forged_count = self._forged_this_minute.get(bot_id, 0) + 1
        self._forged_this_minute[bot_id] = forged_count
        return forged_count

    def drain(self) -> list[audit.Entry]:
        """The audit entries counted since the last drain, each to be added to its row."""
        unflushed, self._unflushed = self._unflushed, {}
        return [_entry(key, count) for key, count in unflushed.items()]


def _entry(key: _Key, count: int) -> audit.Entry:
    return audit.Entry(
        action=ACTION,
        actor=audit.TELEGRAM,
        at=key.minute,
        workspace_id=key.workspace_id,
        bot_id=key.bot_id,
        detail={"status": key.status, "reason": key.reason},
        remote_addr=key.remote_addr,
        count=count,
        aggregate_key=aggregate_key(key),
    )


def aggregate_key(key: _Key) -> str:
    """32 hex digits naming the row of a (minute, bot, workspace, status, reason, address)."""
    text = "\x1f".join(
        str(part)
        for part in (
            key.minute.isoformat(),
            key.bot_id,
            key.workspace_id,
            key.status,
            key.reason,
            key.remote_addr,
        )
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


async def flush_periodically(
    tally: RejectionTally,
    record: Callable[[list[audit.Entry]], None],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    interval: float = FLUSH_SECONDS,
) -> None:
    """Hand the tally's entries to `record` (the writer's queue) every `interval` seconds.

    Runs until cancelled; the caller drains once more at shutdown so nothing counted is lost.
    """
    while True:
        await sleep(interval)
        entries = tally.drain()
        if entries:
            record(entries)
