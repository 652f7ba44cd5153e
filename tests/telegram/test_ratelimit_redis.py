"""`RedisRateLimiter` against the real Redis: limits shared by processes, atomic and expiring.

Real server time passes during these tests, so limits are hours long and waits are compared
with a tolerance; nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tgrelay import errors
from tgrelay.telegram import ratelimit, ratelimit_redis
from tgrelay.telegram.ratelimit import Limits, Rate, Slot

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


def window(seconds: float) -> float:
    """A window as the window check counts it."""
    return seconds * (1 + ratelimit.CLOCK_RATE_MARGIN) + ratelimit.WINDOW_EDGE_SECONDS


def answer(slot: Slot) -> tuple[bool, float]:
    """What a caller acts on: whether it has a slot, and how long to wait."""
    assert slot.new_states == {}  # the script stores the states itself
    return slot.reserved, slot.wait_seconds


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
    return ratelimit_redis.RedisRateLimiter(client, limits, prefix=prefix)


async def test_two_processes_share_every_limit(client: redis.asyncio.Redis, prefix: str) -> None:
    """A reservation by one process makes the other refuse that chat and group and space the bot's other chats."""
    first, second = process(client, prefix), process(client, prefix)
    assert [
        answer(await first.reserve(BOT, GROUP)),
        answer(await second.reserve(BOT, GROUP)),  # refused until the group key frees
        answer(await second.reserve(BOT, PRIVATE)),  # behind the bot key only: refusals move none
        answer(await first.reserve(BOT + 1, GROUP)),
    ] == [(True, 0.0), (False, about(GROUP_WAIT)), (True, about(BOT_WAIT)), (True, 0.0)]


async def test_two_processes_get_distinct_slots_at_the_bot_interval(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """Processes contending for one bot's chats each get their own slot, one bot interval after the last."""
    first, second = process(client, prefix), process(client, prefix)
    answers = [
        answer(await limiter.reserve(BOT, chat_id))
        for chat_id, limiter in zip(range(1, 9), [first, second] * 4, strict=True)
    ]
    assert answers == [(True, 0.0), *((True, about(k * BOT_WAIT)) for k in range(1, 8))]


async def test_busy_chat_is_refused_in_the_other_process(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """With Telegram's limits a chat that one process reserved is refused in the other for about 1.04 s."""
    first, second = process(client, prefix, Limits()), process(client, prefix, Limits())
    assert answer(await first.reserve(BOT, PRIVATE)) == (True, 0.0)
    reserved, wait = answer(await second.reserve(BOT, PRIVATE))
    assert not reserved
    assert 0.9 < wait <= 1.04


async def test_hold_chat_refuses_that_chat_only_and_never_shortens(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """A 429 hold in one process refuses that chat in every process, while the bot's other chats and other bots get slots; once the bot's queue outlasts the hold, the chat is reserved behind it."""
    first, second = process(client, prefix), process(client, prefix)
    await first.hold_chat(BOT, GROUP, 600)
    await second.hold_chat(BOT, GROUP, 10)
    assert [
        answer(await second.reserve(BOT, GROUP)),
        answer(await first.reserve(BOT, PRIVATE)),
        answer(await second.reserve(BOT, OTHER_PRIVATE)),
        answer(await second.reserve(BOT + 1, GROUP)),
        answer(await first.reserve(BOT, GROUP)),
    ] == [
        (False, about(600)),
        (True, 0.0),
        (True, about(BOT_WAIT)),
        (True, 0.0),
        (True, about(2 * BOT_WAIT)),  # the hold ends before the bot's next slot: reserved there
    ]


async def test_starts_are_shared_by_processes(client: redis.asyncio.Redis, prefix: str) -> None:
    """A start recorded by one process fills the window for the other, per key, and a refused
    start records nothing."""
    first, second = process(client, prefix), process(client, prefix)
    assert await first.start(BOT, PRIVATE, "first") == 0.0  # in flight: it may arrive any time
    waits = [
        await second.start(BOT, PRIVATE, "second"),  # the chat and the bot key are full
        await second.start(BOT, OTHER_PRIVATE, "second"),  # the bot key is full
        await first.start(BOT + 1, OTHER_PRIVATE, "other bot"),  # another bot: free
    ]
    assert waits == [about(window(CHAT_WAIT)), about(window(BOT_WAIT)), 0.0]
    # The late start moved the TATs too: a reservation there now waits like the start did.
    assert answer(await second.reserve(BOT, PRIVATE)) == (False, about(CHAT_WAIT))


async def test_a_start_spaces_each_key_as_confirmed_does(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """The start script mirrors `spacings_for`: the group's next send one plain spacing on,
    not a stretched one (the chat's stretched window, 7,560 s, is shorter)."""
    limiter = process(client, prefix, dataclasses.replace(HOURLY, safety=0.05))
    assert await limiter.start(BOT, GROUP, "send") == 0.0
    assert answer(await limiter.reserve(BOT, GROUP)) == (False, about(GROUP_WAIT))


async def test_a_send_counts_in_flight_until_its_finish(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """Each key's log scores a started send at the latest it can arrive (its call timeout on),
    then, once finished, at its finish; a finish for a send not logged adds nothing."""
    limiter = process(client, prefix)
    assert await limiter.start(BOT, GROUP, "send") == 0.0
    logs = [f"{prefix}{key}:sends" for key in ratelimit.keys_for(BOT, GROUP, HOURLY)]

    async def scores(send_id: str) -> list[float | None]:
        seconds, micros = await client.time()
        now = seconds * 1_000_000 + micros
        found = [await client.zscore(log, send_id) for log in logs]
        return [None if score is None else (score - now) / 1_000_000 for score in found]

    in_flight = pytest.approx(ratelimit.IN_FLIGHT_SECONDS, abs=1)
    assert await scores("send") == [in_flight] * 3
    await limiter.finish(BOT, GROUP, "send", answered=False)
    assert await scores("send") == [pytest.approx(0, abs=1)] * 3
    await limiter.finish(BOT, GROUP, "ghost", answered=True)
    assert await scores("ghost") == [None] * 3


async def test_an_answered_send_counts_less_the_fixed_round_trip_once_trusted(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """The finish script mirrors the in-process limiter: an answered send counts from its
    answer less the least round trip, once ROUND_TRIPS_TRUSTED were seen, never from before
    its start; before that, or unanswered, from its end. Every request here takes 0.1 s or
    more, so the least round trip does too."""
    roomy = Limits(per_bot=Rate(count=100, per_seconds=1), per_chat=Rate(count=1, per_seconds=1))
    limiter = process(client, prefix, roomy)
    log = f"{prefix}{{{BOT}}}:bot:sends"

    async def now() -> int:
        seconds, micros = await client.time()
        return int(seconds) * 1_000_000 + int(micros)

    async def send(chat_id: int, *, answered: bool) -> tuple[int, int, int, float]:
        """Redis's time before the start, before the finish and after it, and the score."""
        before = await now()
        assert await limiter.start(BOT, chat_id, f"send {chat_id}") == 0.0
        await asyncio.sleep(0.1)
        ending = await now()
        await limiter.finish(BOT, chat_id, f"send {chat_id}", answered=answered)
        score = await client.zscore(log, f"send {chat_id}")
        assert score is not None
        return before, ending, await now(), score

    untrusted = await send(1, answered=True)
    for chat_id in range(2, ratelimit.ROUND_TRIPS_TRUSTED + 1):
        await send(chat_id, answered=True)
    trusted = await send(100, answered=True)
    unanswered = await send(101, answered=False)
    assert untrusted[1] <= untrusted[3] <= untrusted[2]
    assert trusted[0] <= trusted[3] <= trusted[2] - 100_000
    assert unanswered[1] <= unanswered[3] <= unanswered[2]


async def test_keys_expire_at_their_new_tat(client: redis.asyncio.Redis, prefix: str) -> None:
    """Every key the limiter writes expires when its TAT passes, and a refusal writes none."""
    limiter = process(client, prefix)
    assert answer(await limiter.reserve(BOT, GROUP)) == (True, 0.0)
    assert answer(await limiter.reserve(BOT, GROUP)) == (False, about(GROUP_WAIT))
    await limiter.hold_chat(BOT, PRIVATE, 30)
    ttls = {
        key.decode().removeprefix(prefix): await client.pttl(key)
        async for key in client.scan_iter(match=f"{prefix}*")
    }
    tats_ms = {
        "{1000}:bot": BOT_WAIT * 1000,
        f"{{1000}}:chat:{GROUP}": CHAT_WAIT * 1000,
        f"{{1000}}:group:{GROUP}": GROUP_WAIT * 1000,
        f"{{1000}}:chat:{PRIVATE}": 30_000,
    }
    assert ttls == {key: pytest.approx(ms, abs=5000) for key, ms in tats_ms.items()}
    assert all(ttls[key] <= tats_ms[key] for key in ttls), ttls


async def test_unreachable_redis_is_a_storage_error() -> None:
    """Without a Redis server reserve, start and hold_chat raise StorageUnavailable, never a
    redis-py error; finish only logs."""
    dead = redis.asyncio.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    limiter = ratelimit_redis.RedisRateLimiter(dead, Limits(), close_client=True)
    with pytest.raises(errors.StorageUnavailable) as reserving:
        await limiter.reserve(BOT, PRIVATE)
    with pytest.raises(errors.StorageUnavailable):
        await limiter.hold_chat(BOT, PRIVATE, 5)
    with pytest.raises(errors.StorageUnavailable):
        await limiter.start(BOT, PRIVATE, "send")
    # Not raised: the send went out, and its job must not fail and send it again.
    await limiter.finish(BOT, PRIVATE, "send", answered=True)
    await limiter.close()
    assert isinstance(reserving.value.__cause__, redis.exceptions.ConnectionError)


async def test_factory_with_redis_url_shares_limits_through_redis(
    client: redis.asyncio.Redis,
) -> None:
    """A Redis URL gives limiters that see each other's reservations under the default prefix."""
    bot_id = 10**12 + secrets.randbelow(10**9)  # no real bot has such an id
    first = ratelimit.rate_limiter(REDIS_URL, Limits())
    second = ratelimit.rate_limiter(REDIS_URL, Limits())
    try:
        assert isinstance(first, ratelimit_redis.RedisRateLimiter)
        assert answer(await first.reserve(bot_id, PRIVATE)) == (True, 0.0)
        reserved, wait = answer(await second.reserve(bot_id, PRIVATE))
        assert not reserved
        assert 0.9 < wait <= 1.04
    finally:
        await first.close()
        await second.close()
        await delete_keys(client, f"tgrelay:rl:{{{bot_id}}}")


def test_factory_rejects_a_malformed_redis_url() -> None:
    """A URL that is not Redis's is a configuration error at start-up."""
    with pytest.raises(errors.ConfigurationError):
        ratelimit.rate_limiter("http://127.0.0.1:6379", Limits())
