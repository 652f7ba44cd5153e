"""Flood control: Telegram's per-chat, per-group and per-bot sending limits, off by default.

Sends are counted in a sliding window `(now - window, now]` of a monotonic time source
(real time unless a test passes its own), so the limits hold at the speed tests run.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tgrelay.testing.emulator import errors

# How many of the latest sends the report lists with their times.
SEND_LOG_LENGTH = 10_000


@dataclass(frozen=True, kw_only=True)
class Limit:
    """At most `count` sends in any `window` seconds."""

    count: int
    window: float

    def as_json(self) -> list[Any]:
        return [self.count, self.window]


# Telegram's documented limits (Bots FAQ): about 1 message a second in one chat, 20 a minute
# in one group, 30 a second overall.
@dataclass(frozen=True, kw_only=True)
class Limits:
    """The three limits a bot's sendMessage must pass."""

    per_chat: Limit = field(default_factory=lambda: Limit(count=1, window=1.0))
    # Only chats with negative ids: groups, supergroups and channels.
    per_group: Limit = field(default_factory=lambda: Limit(count=20, window=60.0))
    per_bot: Limit = field(default_factory=lambda: Limit(count=30, window=1.0))


def wait_for_slot(sends: Iterable[float], limit: Limit, now: float) -> float:
    """Seconds until one more send fits under `limit` (0 when it fits now).

    `sends` are the times of earlier sends; one at time t counts while t > now - window.
    """
    recent = sorted(t for t in sends if t > now - limit.window)
    if len(recent) < limit.count:
        return 0.0
    # The send that must leave the window for one more to fit.
    blocking = recent[len(recent) - limit.count]
    return blocking + limit.window - now


def retry_after(wait: float) -> int:
    """The `retry_after` Telegram states for a wait: whole seconds, rounded up, at least 1."""
    return max(1, math.ceil(wait))


def verdict(
    *,
    chat_sends: Iterable[float],
    bot_sends: Iterable[float],
    is_group: bool,
    limits: Limits,
    now: float,
) -> int | None:
    """None when a send to this chat may go now, else the retry_after to answer."""
    chat_times = list(chat_sends)
    waits = [
        wait_for_slot(chat_times, limits.per_chat, now),
        wait_for_slot(bot_sends, limits.per_bot, now),
    ]
    if is_group:
        waits.append(wait_for_slot(chat_times, limits.per_group, now))
    longest = max(waits)
    return retry_after(longest) if longest > 0 else None


@dataclass(kw_only=True)
class _BotSends:
    every: collections.deque[float] = field(default_factory=collections.deque)
    by_chat: dict[int, collections.deque[float]] = field(default_factory=dict)


class FloodControl:
    """Counts each bot's sends and, when enabled, refuses those over a limit with 429."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self.enabled = False
        self.limits = Limits()
        self._sends: dict[int, _BotSends] = {}
        self.rejected_by_chat: collections.Counter[int] = collections.Counter()
        self.sent_by_chat: collections.Counter[int] = collections.Counter()
        # (chat_id, seconds since flood control was last configured) of recent sends, so a
        # benchmark can see how its sends were spaced as they arrived.
        self._sent_at: collections.deque[tuple[int, float]] = collections.deque(
            maxlen=SEND_LOG_LENGTH
        )
        # (chat_id, seconds as above) of recent refusals: where a 429 fell among the sends.
        self._rejected_at: collections.deque[tuple[int, float]] = collections.deque(
            maxlen=SEND_LOG_LENGTH
        )
        self._configured_at = self._monotonic()

    def configure(self, *, enabled: bool, limits: Limits) -> None:
        self.enabled = enabled
        self.limits = limits
        self._sent_at.clear()
        self._rejected_at.clear()
        self._configured_at = self._monotonic()

    def check(self, bot_id: int, chat_id: int) -> None:
        """Raise Telegram's 429 if the bot may not send to this chat now (counted as rejected)."""
        if not self.enabled:
            return
        sends = self._sends.get(bot_id) or _BotSends()
        retry = verdict(
            chat_sends=sends.by_chat.get(chat_id, ()),
            bot_sends=sends.every,
            is_group=chat_id < 0,
            limits=self.limits,
            now=self._monotonic(),
        )
        if retry is not None:
            self.rejected_by_chat[chat_id] += 1
            self._rejected_at.append((chat_id, self._monotonic() - self._configured_at))
            raise errors.BotApiError(
                429, f"Too Many Requests: retry after {retry}", {"retry_after": retry}
            )

    def record(self, bot_id: int, chat_id: int) -> None:
        """A message went out; sends older than the longest window are forgotten."""
        now = self._monotonic()
        sends = self._sends.setdefault(bot_id, _BotSends())
        limits = (self.limits.per_chat, self.limits.per_group, self.limits.per_bot)
        horizon = now - max(limit.window for limit in limits)
        for times in (sends.by_chat.setdefault(chat_id, collections.deque()), sends.every):
            times.append(now)
            while times and times[0] <= horizon:
                times.popleft()
        self.sent_by_chat[chat_id] += 1
        self._sent_at.append((chat_id, now - self._configured_at))

    def report(self) -> dict[str, Any]:
        """GET /_emulator/flood: the settings and what was sent and refused, by chat."""
        return {
            "enabled": self.enabled,
            "per_chat": self.limits.per_chat.as_json(),
            "per_group": self.limits.per_group.as_json(),
            "per_bot": self.limits.per_bot.as_json(),
            "rejected": sum(self.rejected_by_chat.values()),
            "rejected_by_chat": {str(k): v for k, v in self.rejected_by_chat.items()},
            "sent_by_chat": {str(k): v for k, v in self.sent_by_chat.items()},
            "sent_at": [[chat_id, round(at, 6)] for chat_id, at in self._sent_at],
            "rejected_at": [[chat_id, round(at, 6)] for chat_id, at in self._rejected_at],
        }
