"""Outgoing Bot API rate limits as reservations: every send is given its own future slot.

Telegram documents about 30 messages/s per bot, 1 message/s per chat and 20 messages/minute
per group (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
Each limit is a GCRA key (state: the theoretical arrival time, TAT) with a burst of one, used
to schedule rather than to refuse: a send gets the earliest instant every key allows and each
key moves one stretched interval past it, so sends on a key are at least that far apart and
any sliding window of `per_seconds` holds at most `count` sends. Contending jobs thus queue at
distinct instants instead of all retrying at the same one. Workers never sleep here: a caller
reschedules its job to its slot. A 429's `retry_after` holds that chat's key, so later
reservations there queue behind it; a reservation that lands late (behind a held chat or a full
group) moves the bot key with it, so the bot's other chats then queue behind it too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio
import redis.exceptions

from tgrelay import errors

# Past this many keys the in-process limiter forgets keys whose TAT has passed (they constrain
# no slot any more, so forgetting them changes no answer).
MAX_IDLE_KEYS = 100_000
REDIS_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, kw_only=True)
class Rate:
    """At most `count` sends in any window of `per_seconds`."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1 or not self.per_seconds > 0:
            raise ValueError("a rate needs count >= 1 and per_seconds > 0")


@dataclass(frozen=True, kw_only=True)
class Limits:
    """The limits that apply to every send; the defaults are Telegram's documented ones."""

    per_bot: Rate = Rate(count=30, per_seconds=1)
    per_chat: Rate = Rate(count=1, per_seconds=1)
    per_group: Rate = Rate(count=20, per_seconds=60)  # in addition to per_chat, for chat_id < 0
    # Intervals are stretched by this fraction so clock skew between us and Telegram cannot
    # make a send look early, and because a send that runs a little late compresses the gap to
    # the next reserved one: 4 % of the 1 s chat interval is 40 ms of slack. Capped so the
    # achieved rate stays within 5 % of each limit.
    safety: float = 0.04

    def __post_init__(self) -> None:
        if not 0 <= self.safety <= 0.05:
            raise ValueError("safety is a fraction in [0, 0.05]")

    def interval(self, rate: Rate) -> float:
        """Seconds between two sends on one key: the rate's spacing, stretched by `safety`."""
        return rate.per_seconds / rate.count * (1 + self.safety)


@dataclass(frozen=True, kw_only=True)
class Slot:
    """The instant reserved for one send over all the keys that apply to it."""

    wait_seconds: float  # from now until the slot; 0.0 means send now
    new_states: Mapping[str, float]  # each key's TAT to store: the slot plus its interval


def keys_for(bot_id: int, chat_id: int, limits: Limits) -> dict[str, float]:
    """The GCRA keys one send touches, each with its interval in seconds.

    `{bot_id}` is a Redis Cluster hash tag: all keys of one bot live in one slot, so one script
    may touch them together.
    """
    keys = {
        f"{{{bot_id}}}:bot": limits.interval(limits.per_bot),
        f"{{{bot_id}}}:chat:{chat_id}": limits.interval(limits.per_chat),
    }
    if chat_id < 0:  # groups, supergroups and channels have negative ids
        keys[f"{{{bot_id}}}:group:{chat_id}"] = limits.interval(limits.per_group)
    return keys


def chat_key(bot_id: int, chat_id: int) -> str:
    """The key that `hold_chat` blocks after a 429 in that chat."""
    return f"{{{bot_id}}}:chat:{chat_id}"


def schedule(
    states: Mapping[str, float | None], intervals: Mapping[str, float], now: float
) -> Slot:
    """Scheduling GCRA with a burst of one over several keys: always a slot, never a refusal.

    `states` holds each key's TAT (None when unknown). The slot is the latest of now and every
    key's TAT; each key's TAT then moves to the slot plus its interval.
    """
    slot = max([now, *(tat for key in intervals if (tat := states.get(key)) is not None)])
    return Slot(
        wait_seconds=slot - now,
        new_states={key: slot + interval for key, interval in intervals.items()},
    )


def held(tat: float | None, now: float, seconds: float) -> float:
    """A key's TAT after Telegram asked us to wait `seconds` there: never earlier than before."""
    until = now + max(seconds, 0.0)
    return until if tat is None else max(tat, until)


class RateLimiter(Protocol):
    """Where a sender reserves its slot before each Bot API send."""

    async def reserve(self, bot_id: int, chat_id: int) -> float:
        """Reserve the earliest slot every applicable key allows; seconds until it (0.0: now).

        Always succeeds. The caller sends no earlier than that instant (it reschedules its job
        there) and then sends without asking again.
        """
        ...

    async def hold_chat(self, bot_id: int, chat_id: int, seconds: float) -> None:
        """After a 429 with `retry_after`: block this chat for `seconds`, and no other chat."""
        ...

    async def close(self) -> None:
        """Release what the limiter holds (a Redis connection pool)."""
        ...


class InProcessRateLimiter:
    """Limits for a single process: TATs in a dict, read from a monotonic clock."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_idle_keys: int = MAX_IDLE_KEYS,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._max_idle_keys = max_idle_keys
        self._sweep_above = max_idle_keys

    async def reserve(self, bot_id: int, chat_id: int) -> float:
        # No await between read and write: the event loop makes this read-and-set atomic.
        now = self._clock()
        intervals = keys_for(bot_id, chat_id, self._limits)
        slot = schedule({key: self._tats.get(key) for key in intervals}, intervals, now)
        self._tats.update(slot.new_states)
        self._forget_idle(now)
        return slot.wait_seconds

    async def hold_chat(self, bot_id: int, chat_id: int, seconds: float) -> None:
        key = chat_key(bot_id, chat_id)
        now = self._clock()
        self._tats[key] = held(self._tats.get(key), now, seconds)
        self._forget_idle(now)

    async def close(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        """How many keys are remembered (for tests of the memory bound)."""
        return len(self._tats)

    def _forget_idle(self, now: float) -> None:
        if len(self._tats) <= self._sweep_above:
            return
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        # Keys still busy stay; sweep again only when the dict has doubled, so the cost of a
        # sweep is spread over the inserts that led to it.
        self._sweep_above = max(self._max_idle_keys, 2 * len(self._tats))


# KEYS: the keys of one send; ARGV: each key's interval in whole microseconds. Times are integer
# microseconds of the Redis server's clock (exact in a Lua double), so every process shares one
# clock. Mirrors `schedule` and returns the wait in microseconds; each stored key expires at
# its new TAT, after which it constrains no slot anyway.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = now
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key))
  if tat and tat > slot then slot = tat end
end
for i, key in ipairs(KEYS) do
  local tat = slot + tonumber(ARGV[i])
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return slot - now
"""

# KEYS[1]: a chat key; ARGV[1]: microseconds to hold it. Mirrors `held`.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current > tat then tat = current end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return 0
"""


def _microseconds(seconds: float) -> int:
    # Rounded up, so the stored spacing is never shorter than the computed one.
    return math.ceil(max(seconds, 0.0) * 1_000_000)


class RedisRateLimiter:
    """Limits shared by every process that uses the same Redis: one atomic script per call."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        limits: Limits,
        *,
        prefix: str = "tgrelay:rl:",
        close_client: bool = False,  # True when this limiter owns the client
    ) -> None:
        self._client = client
        self._limits = limits
        self._prefix = prefix
        self._close_client = close_client
        self._reserve = client.register_script(_RESERVE)
        self._hold = client.register_script(_HOLD)

    async def reserve(self, bot_id: int, chat_id: int) -> float:
        intervals = keys_for(bot_id, chat_id, self._limits)
        keys = [self._prefix + key for key in intervals]
        args = [_microseconds(interval) for interval in intervals.values()]
        try:
            wait = await self._reserve(keys=keys, args=args)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc
        return int(wait) / 1_000_000

    async def hold_chat(self, bot_id: int, chat_id: int, seconds: float) -> None:
        key = self._prefix + chat_key(bot_id, chat_id)
        try:
            await self._hold(keys=[key], args=[_microseconds(seconds)])
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        if self._close_client:
            await self._client.aclose()


def _unavailable(exc: redis.exceptions.RedisError) -> errors.StorageUnavailable:
    # A timeout may come after the script ran: a slot is then wasted, never overspent.
    return errors.StorageUnavailable(
        f"Redis failed for the rate limiter ({type(exc).__name__}); the send got no slot"
    )


def rate_limiter(redis_url: str | None, limits: Limits) -> RateLimiter:
    """The shared Redis limiter when a URL is configured, else one for this process only."""
    if redis_url is None:
        return InProcessRateLimiter(limits)
    try:
        # Bounded waits: a stalled Redis must fail the send job, not hold its worker slot.
        client = redis.asyncio.Redis.from_url(
            redis_url,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
    except ValueError as exc:
        raise errors.ConfigurationError(f"TGRELAY_REDIS_URL is not a Redis URL: {exc}") from exc
    return RedisRateLimiter(client, limits, close_client=True)
