"""`RedisRateLimiter` against the real Redis: limits shared by processes, atomic and expiring.

Real server time passes during these tests, so limits are hours long and waits are compared
with a tolerance; nothing asserts on elapsed time.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tgrelay import errors
from tgrelay.telegram import ratelimit
from tgrelay.telegram.ratelimit import Limits, Rate

REDIS_URL_VARIABLE = "TGRELAY_TEST_REDIS_URL"
CONFIGURED_REDIS_URL = os.environ.get(REDIS_URL_VARIABLE)
REDIS_URL = CONFIGURED_REDIS_URL or "redis://127.0.0.1:6379/0"
BOT = 1000
PRIVATE = 42
OTHER_PRIVATE = 43
GROUP = -100500
# Distinct, hour-scale intervals: which key answered shows in the wait, and test runtime does not.
BOT_WAIT, CHAT_WAIT, GROUP_WAIT = 3600.0, 7200.0, 14400.0
HOURLY = Limits(
    per_bot=Rate(count=1, per_seconds=BOT_WAIT),
    per_chat=Rate(count=1, per_seconds=CHAT_WAIT),
    per_group=Rate(count=1, per_seconds=GROUP_WAIT),
    safety=0,
)


def about(seconds: float) -> object:
    """A wait of `seconds`, less the little real time the test itself took."""
    return pytest.approx(seconds, abs=5)


@pytest.fixture
async def client() -> AsyncIterator[redis.asyncio.Redis]:
    """A client of TGRELAY_TEST_REDIS_URL or the local Redis; skipped with the reason when the local one does not answer PING."""
    connection = redis.asyncio.Redis.from_url(
        REDIS_URL, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    try:
        await connection.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        await connection.aclose()
        if CONFIGURED_REDIS_URL:  # asked for explicitly: an unreachable server is a failure
            raise
        pytest.skip(
            f"Redis not reachable at {REDIS_URL} ({type(exc).__name__}); set {REDIS_URL_VARIABLE}"
        )
    yield connection
    await connection.aclose()


@pytest.fixture
async def prefix(client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    own = f"tgrelay:test:{secrets.token_hex(6)}:"
    yield own
    await delete_keys(client, own)


async def delete_keys(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


def process(
    client: redis.asyncio.Redis, prefix: str, limits: Limits = HOURLY
) -> ratelimit.RateLimiter:
    """A limiter as a separate tgrelay process would build it (sharing only the server)."""
    return ratelimit.RedisRateLimiter(client, limits, prefix=prefix)


async def test_two_processes_share_every_limit(client: redis.asyncio.Redis, prefix: str) -> None:
    """A send by one process counts against the bot, chat and group limits the other sees."""
    first, second = process(client, prefix), process(client, prefix)
    assert await first.acquire(BOT, GROUP) == 0.0
    assert [
        await second.acquire(BOT, GROUP),
        await second.acquire(BOT, PRIVATE),
        await second.acquire(BOT + 1, GROUP),
    ] == [about(GROUP_WAIT), about(BOT_WAIT), 0.0]
    assert await first.acquire(BOT + 1, PRIVATE) == about(BOT_WAIT)


async def test_default_limits_space_one_chat_by_the_stretched_second(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """With Telegram's limits a second send to one chat, from another process, waits up to 1.03 s."""
    first, second = process(client, prefix, Limits()), process(client, prefix, Limits())
    assert await first.acquire(BOT, PRIVATE) == 0.0
    wait = await second.acquire(BOT, PRIVATE)
    assert 0 < wait <= 1.03


async def test_refused_chat_leaves_the_bot_key_alone(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """A send refused by its held chat reserves no bot slot: another chat still goes at once."""
    first, second = process(client, prefix), process(client, prefix)
    await first.hold_chat(BOT, PRIVATE, 60)
    assert [await second.acquire(BOT, PRIVATE), await second.acquire(BOT, PRIVATE)] == [
        about(60),
        about(60),
    ]
    assert await second.acquire(BOT, OTHER_PRIVATE) == 0.0


async def test_refused_bot_leaves_the_chat_and_group_keys_alone(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """A send refused by the bot limit reserves nothing in the group: asking again still waits only for the bot."""
    first, second = process(client, prefix), process(client, prefix)
    assert await first.acquire(BOT, PRIVATE) == 0.0
    # Had the first refusal taken the group's slots, the second would wait GROUP_WAIT.
    assert [await second.acquire(BOT, GROUP), await second.acquire(BOT, GROUP)] == [
        about(BOT_WAIT),
        about(BOT_WAIT),
    ]


async def test_hold_chat_blocks_that_chat_only_and_never_shortens(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """A 429 hold in one process blocks that chat for all processes, and no other chat or bot."""
    first, second = process(client, prefix), process(client, prefix)
    await first.hold_chat(BOT, GROUP, 600)
    await second.hold_chat(BOT, GROUP, 10)
    assert [
        await second.acquire(BOT, GROUP),
        await second.acquire(BOT + 1, GROUP),
        await first.acquire(BOT, PRIVATE),
    ] == [about(600), 0.0, 0.0]


async def test_keys_expire_when_they_would_admit_anyway(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """Every key the limiter writes carries a TTL no longer than its interval, so idle keys vanish."""
    limiter = process(client, prefix)
    assert await limiter.acquire(BOT, GROUP) == 0.0
    await limiter.hold_chat(BOT, PRIVATE, 30)
    ttls = {
        key.decode().removeprefix(prefix): await client.pttl(key)
        async for key in client.scan_iter(match=f"{prefix}*")
    }
    assert ttls.keys() == {
        "{1000}:bot",
        f"{{1000}}:chat:{GROUP}",
        f"{{1000}}:group:{GROUP}",
        f"{{1000}}:chat:{PRIVATE}",
    }
    limits_ms = {
        "{1000}:bot": BOT_WAIT * 1000,
        f"{{1000}}:chat:{GROUP}": CHAT_WAIT * 1000,
        f"{{1000}}:group:{GROUP}": GROUP_WAIT * 1000,
        f"{{1000}}:chat:{PRIVATE}": 30_000,
    }
    assert all(0 < ttls[key] <= limits_ms[key] for key in ttls), ttls


async def test_unreachable_redis_is_a_storage_error() -> None:
    """Without a Redis server acquire and hold_chat raise StorageUnavailable, never a redis-py error."""
    dead = redis.asyncio.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    limiter = ratelimit.RedisRateLimiter(dead, Limits(), close_client=True)
    with pytest.raises(errors.StorageUnavailable) as acquiring:
        await limiter.acquire(BOT, PRIVATE)
    with pytest.raises(errors.StorageUnavailable):
        await limiter.hold_chat(BOT, PRIVATE, 5)
    await limiter.close()
    assert isinstance(acquiring.value.__cause__, redis.exceptions.ConnectionError)


async def test_factory_with_redis_url_shares_limits_through_redis(
    client: redis.asyncio.Redis,
) -> None:
    """A Redis URL gives limiters that see each other's sends under the default prefix."""
    bot_id = 10**12 + secrets.randbelow(10**9)  # no real bot has such an id
    first = ratelimit.rate_limiter(REDIS_URL, Limits())
    second = ratelimit.rate_limiter(REDIS_URL, Limits())
    try:
        assert isinstance(first, ratelimit.RedisRateLimiter)
        assert await first.acquire(bot_id, PRIVATE) == 0.0
        assert 0 < await second.acquire(bot_id, PRIVATE) <= 1.03
    finally:
        await first.close()
        await second.close()
        await delete_keys(client, f"tgrelay:rl:{{{bot_id}}}")


def test_factory_rejects_a_malformed_redis_url() -> None:
    """A URL that is not Redis's is a configuration error at start-up."""
    with pytest.raises(errors.ConfigurationError):
        ratelimit.rate_limiter("http://127.0.0.1:6379", Limits())
