"""The rate limiter shared through Redis: every process that uses the same Redis keeps one
set of Telegram's send limits. Each call is one atomic Lua script that mirrors the pure
functions of `ratelimit` (`schedule`, `admit`, `held`) on the Redis server's clock.
"""

from __future__ import annotations

import math

import redis.asyncio
import redis.exceptions
import structlog

from tgrelay import errors
from tgrelay.telegram.ratelimit import (
    IN_FLIGHT_SECONDS,
    REDIS_TIMEOUT_SECONDS,
    Limits,
    RoundTrips,
    Slot,
    chat_key,
    keys_for,
    spacings_for,
    windows_for,
)

log = structlog.get_logger(__name__)


# KEYS: the keys of one send; ARGV: each key's interval in whole microseconds. Times are integer
# microseconds of the Redis server's clock (exact in a Lua double), so every process shares one
# clock. Mirrors `schedule` and returns {wait in microseconds, 1 if reserved else 0}; each
# stored key expires at its new TAT, after which it constrains no slot anyway.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = now
local shared = tonumber(redis.call('GET', KEYS[1]))
if shared and shared > slot then slot = shared end
local busy = now
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat and tat > busy then busy = tat end
end
if busy > slot then return {busy - now, 0} end
for i, key in ipairs(KEYS) do
  local tat = slot + tonumber(ARGV[i])
  redis.call('SET', key, string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return {slot - now, 1}
"""

# KEYS: the TAT keys of one send, then their logs (sorted sets of send ids scored by latest
# arrival); ARGV: spacings, counts and windows (microseconds), then IN_FLIGHT_SECONDS
# (microseconds) and the send's id. Mirrors `admit`, then `confirmed`.
_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = (#KEYS) / 2
local in_flight = tonumber(ARGV[3 * n + 1])
local wait = 0
for i = 1, n do
  local log, count, window = KEYS[n + i], tonumber(ARGV[n + i]), tonumber(ARGV[2 * n + i])
  redis.call('ZREMRANGEBYSCORE', log, '-inf', now - window)
  local size = redis.call('ZCARD', log)
  if size >= count then
    local blocking = redis.call('ZRANGE', log, size - count, size - count, 'WITHSCORES')
    local until_free = math.min(tonumber(blocking[2]), now) + window - now
    if until_free > wait then wait = until_free end
  end
end
if wait > 0 then return wait end
for i = 1, n do
  local window = tonumber(ARGV[2 * n + i])
  redis.call('ZADD', KEYS[n + i], now + in_flight, ARGV[3 * n + 2])
  redis.call('PEXPIRE', KEYS[n + i], math.ceil((in_flight + window) / 1000))
  local tat = now + tonumber(ARGV[i])
  local current = tonumber(redis.call('GET', KEYS[i]))
  if current and current > tat then tat = current end
  redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
end
return 0
"""

# KEYS: the logs of one send's keys; ARGV: the send's id, then IN_FLIGHT_SECONDS and the
# process's `RoundTrips.fixed()` (microseconds), then 1 if answered else 0. Mirrors
# `InProcessRateLimiter.finish`; returns the send's round trip (-1: the send is not logged,
# and an id no longer there, expired, is not added back).
_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return -1 end
local round_trip = now - (tonumber(score) - tonumber(ARGV[2]))
local arrived = now
if ARGV[4] == '1' then arrived = now - math.min(round_trip, tonumber(ARGV[3])) end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', arrived, ARGV[1])
end
return round_trip
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
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._round_trips = RoundTrips()

    async def reserve(self, bot_id: int, chat_id: int) -> Slot:
        intervals = keys_for(bot_id, chat_id, self._limits)
        keys = [self._prefix + key for key in intervals]
        args = [_microseconds(interval) for interval in intervals.values()]
        try:
            wait, reserved = await self._reserve(keys=keys, args=args)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc
        return Slot(wait_seconds=int(wait) / 1_000_000, reserved=bool(int(reserved)))

    async def start(self, bot_id: int, chat_id: int, send_id: str) -> float:
        spacings = spacings_for(bot_id, chat_id, self._limits)
        windows = windows_for(bot_id, chat_id, self._limits)
        keys = [self._prefix + key for key in spacings] + self._logs(bot_id, chat_id)
        args: list[int | str] = [_microseconds(spacing) for spacing in spacings.values()]
        args += [count for count, _ in windows.values()]
        args += [_microseconds(window) for _, window in windows.values()]
        args += [_microseconds(IN_FLIGHT_SECONDS), send_id]
        try:
            wait = await self._start(keys=keys, args=args)
        except redis.exceptions.RedisError as exc:
            raise _unavailable(exc) from exc
        return int(wait) / 1_000_000

    async def finish(self, bot_id: int, chat_id: int, send_id: str, *, answered: bool) -> None:
        args: list[int | str] = [send_id, _microseconds(IN_FLIGHT_SECONDS)]
        # Rounded down, unlike other times: taking off less only makes the bound later.
        args += [math.floor(self._round_trips.fixed() * 1_000_000), int(answered)]
        try:
            round_trip = int(await self._finish(keys=self._logs(bot_id, chat_id), args=args))
            if answered and round_trip >= 0:
                self._round_trips.add(round_trip / 1_000_000)
        except redis.exceptions.RedisError as exc:
            # Not raised: the send went out, and failing its job would send it again. A lost
            # finish only leaves the send counted as in flight, until IN_FLIGHT_SECONDS.
            log.warning("ratelimit.finish_lost", bot_id=bot_id, error=type(exc).__name__)

    def _logs(self, bot_id: int, chat_id: int) -> list[str]:
        """The sorted sets of recent sends, one per key of the send."""
        return [self._prefix + key + ":sends" for key in keys_for(bot_id, chat_id, self._limits)]

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


def connect(redis_url: str, limits: Limits) -> RedisRateLimiter:
    """A limiter on its own client of the Redis at `redis_url`."""
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
