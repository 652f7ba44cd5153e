"""Unit tests for `tgrelay.telegram.ratelimit`: the pure GCRA core and the in-process limiter."""

from __future__ import annotations

import heapq
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgrelay.telegram import ratelimit
from tgrelay.telegram.ratelimit import Decision, Limits, Rate

BOT = 1000
PRIVATE = 42
OTHER_PRIVATE = 43
GROUP = -100500


class FakeClock:
    """Monotonic seconds that only `advance` moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("states", "intervals", "now", "expected"),
    [
        (
            {},
            {"a": 1.0, "b": 0.5},
            10.0,
            Decision(allowed=True, wait_seconds=0.0, new_states={"a": 11.0, "b": 10.5}),
        ),
        (
            {"a": None, "b": 4.0},  # unknown key and a TAT in the past both admit
            {"a": 1.0, "b": 0.5},
            10.0,
            Decision(allowed=True, wait_seconds=0.0, new_states={"a": 11.0, "b": 10.5}),
        ),
        (
            {"a": 10.0},  # a TAT of exactly now admits
            {"a": 1.0},
            10.0,
            Decision(allowed=True, wait_seconds=0.0, new_states={"a": 11.0}),
        ),
        (
            {"a": 10.25, "b": None},  # one key refuses: nothing is reserved on the other
            {"a": 1.0, "b": 0.5},
            10.0,
            Decision(allowed=False, wait_seconds=0.25, new_states={}),
        ),
        (
            {"a": 10.25, "b": 12.5, "c": 3.0},  # the wait is the slowest key's
            {"a": 1.0, "b": 0.5, "c": 2.0},
            10.0,
            Decision(allowed=False, wait_seconds=2.5, new_states={}),
        ),
        (
            {"a": 99.0, "b": 1.0},  # states of keys that do not apply are ignored
            {"b": 0.5},
            10.0,
            Decision(allowed=True, wait_seconds=0.0, new_states={"b": 10.5}),
        ),
    ],
)
def test_decide(
    states: Mapping[str, float | None],
    intervals: Mapping[str, float],
    now: float,
    expected: Decision,
) -> None:
    """Every key admits and all move on, or none moves and the wait is the longest one."""
    assert ratelimit.decide(states, intervals, now) == expected


@pytest.mark.parametrize(
    ("tat", "now", "seconds", "expected"),
    [
        (None, 5.0, 10.0, 15.0),
        (3.0, 5.0, 10.0, 15.0),  # a TAT in the past is replaced
        (20.0, 5.0, 10.0, 20.0),  # a hold never shortens an existing wait
        (None, 5.0, -1.0, 5.0),  # a negative retry_after holds nothing
    ],
)
def test_held(tat: float | None, now: float, seconds: float, expected: float) -> None:
    """A held key's TAT is now + seconds, or its own later TAT."""
    assert ratelimit.held(tat, now, seconds) == expected


@pytest.mark.parametrize(
    ("chat_id", "expected"),
    [
        (PRIVATE, {"{1000}:bot": 1 / 30 * 1.03, "{1000}:chat:42": 1.03}),
        (
            GROUP,
            {
                "{1000}:bot": 1 / 30 * 1.03,
                "{1000}:chat:-100500": 1.03,
                "{1000}:group:-100500": 3 * 1.03,
            },
        ),
    ],
)
def test_keys_for(chat_id: int, expected: dict[str, float]) -> None:
    """A private chat uses the bot and chat keys; a group adds its group key; intervals carry the safety stretch."""
    keys = ratelimit.keys_for(BOT, chat_id, Limits())
    assert keys == pytest.approx(expected)
    assert list(keys) == list(expected)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Rate(count=0, per_seconds=1),
        lambda: Rate(count=1, per_seconds=0),
        lambda: Limits(safety=-0.01),
        lambda: Limits(safety=0.06),  # the achieved rate would fall more than 5 % short
    ],
)
def test_limits_reject_impossible_values(build: object) -> None:
    """Rates need a positive count and window; safety stays within [0, 0.05]."""
    assert callable(build)
    with pytest.raises(ValueError):  # noqa: PT011 - the message is for humans
        build()


def sends_per_key(
    limits: Limits, requests: list[tuple[float, int, bool]]
) -> dict[str, list[float]]:
    """Replay requests (time, chat, retry-when-told) through `decide`; the send times per key."""
    states: dict[str, float] = {}
    sent: dict[str, list[float]] = {}
    queue = list(requests)
    heapq.heapify(queue)
    while queue:
        now, chat_id, retry = heapq.heappop(queue)
        intervals = ratelimit.keys_for(BOT, chat_id, limits)
        decision = ratelimit.decide({key: states.get(key) for key in intervals}, intervals, now)
        if decision.allowed:
            states.update(decision.new_states)
            for key in intervals:
                sent.setdefault(key, []).append(now)
        elif retry:  # a caller that comes back exactly when told: the tightest packing
            heapq.heappush(queue, (now + decision.wait_seconds, chat_id, retry))
    return sent


def most_in_any_window(times: list[float], width: float) -> int:
    """The largest number of times in one closed window [t, t + width]."""
    # A busiest window can always be slid right until it starts at one of the times.
    return max(sum(1 for other in times if start <= other <= start + width) for start in times)


@settings(max_examples=300, deadline=None)
@given(
    rates=st.lists(
        st.builds(
            Rate,
            count=st.integers(min_value=1, max_value=40),
            per_seconds=st.floats(min_value=0.5, max_value=120),
        ),
        min_size=3,
        max_size=3,
    ),
    safety=st.floats(min_value=0.001, max_value=0.05),
    span=st.floats(min_value=0.01, max_value=3),
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1),  # scaled by span × the longest window
            st.sampled_from([PRIVATE, OTHER_PRIVATE, GROUP, GROUP - 1]),
            st.booleans(),
        ),
        max_size=120,
    ),
)
def test_no_window_holds_more_sends_than_the_rate(
    rates: list[Rate], safety: float, span: float, requests: list[tuple[float, int, bool]]
) -> None:
    """Whatever the arrivals, no window of `per_seconds` on any key holds more than `count` sends."""
    limits = Limits(per_bot=rates[0], per_chat=rates[1], per_group=rates[2], safety=safety)
    stretch = span * max(rate.per_seconds for rate in rates)
    arrivals = [(at * stretch, chat_id, retry) for at, chat_id, retry in requests]
    for key, times in sends_per_key(limits, arrivals).items():
        rate = rates[0] if key.endswith(":bot") else rates[1] if ":chat:" in key else rates[2]
        assert most_in_any_window(times, rate.per_seconds) <= rate.count, key


async def saturate(
    limiter: ratelimit.InProcessRateLimiter, clock: FakeClock, chats: list[int], seconds: float
) -> list[float]:
    """Send as fast as the limiter allows, cycling through `chats`; the send times."""
    sent: list[float] = []
    start = clock.now
    index = 0
    while clock.now < start + seconds:
        wait = await limiter.acquire(BOT, chats[index % len(chats)])
        if wait == 0:
            sent.append(clock.now - start)
            index += 1
        else:
            clock.advance(wait)
    return sent


async def test_bot_sends_at_most_30_per_second_and_at_least_95_percent_of_that() -> None:
    """Across many private chats a bot gets between 95 % of 30/s and 30 in every second."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    sent = await saturate(limiter, clock, list(range(1, 1001)), seconds=60)
    assert most_in_any_window(sent, 1.0) == 30
    assert len([t for t in sent if t < 60]) >= 0.95 * 30 * 60


async def test_chat_gets_one_send_per_stretched_second() -> None:
    """A second send to one chat waits the 1.03 s interval, then goes."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    assert await limiter.acquire(BOT, PRIVATE) == 0.0
    clock.advance(0.5)
    assert await limiter.acquire(BOT, PRIVATE) == pytest.approx(0.53)
    assert await limiter.acquire(BOT, OTHER_PRIVATE) == 0.0
    clock.advance(0.53)
    assert await limiter.acquire(BOT, PRIVATE) == 0.0
    sent = await saturate(limiter, clock, [PRIVATE], seconds=30)
    assert most_in_any_window(sent, 1.0) == 1
    assert len(sent) >= 0.95 * 30


async def test_group_gets_twenty_sends_per_minute() -> None:
    """One group, hammered, gets 20 sends in every minute and never 21."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    sent = await saturate(limiter, clock, [GROUP], seconds=600)
    assert most_in_any_window(sent, 60.0) == 20
    assert len([t for t in sent if t < 60]) == 20
    assert len(sent) >= 0.95 * 20 * 10


async def test_hold_chat_blocks_that_chat_only() -> None:
    """After a 429 in one chat, that chat waits retry_after; other chats and bots do not."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    await limiter.hold_chat(BOT, GROUP, 30)
    clock.advance(10)
    await limiter.hold_chat(BOT, GROUP, 5)  # a shorter, later retry_after shortens nothing
    assert [
        await limiter.acquire(BOT, GROUP),
        await limiter.acquire(BOT, PRIVATE),
        await limiter.acquire(BOT + 1, GROUP),
    ] == [pytest.approx(20.0), 0.0, 0.0]
    clock.advance(20)
    assert await limiter.acquire(BOT, GROUP) == 0.0


async def test_refusal_reserves_nothing() -> None:
    """A refused send leaves every key as it was, whichever key refused."""
    clock = FakeClock()
    limits = Limits(
        per_bot=Rate(count=1, per_seconds=100),
        per_chat=Rate(count=1, per_seconds=200),
        per_group=Rate(count=1, per_seconds=400),
        safety=0,
    )
    limiter = ratelimit.InProcessRateLimiter(limits, clock=clock)
    # The chat refuses: had the bot key been taken, the next chat would wait 100 s.
    await limiter.hold_chat(BOT, PRIVATE, 50)
    assert await limiter.acquire(BOT, PRIVATE) == 50.0
    assert await limiter.acquire(BOT, OTHER_PRIVATE) == 0.0
    # The bot refuses: had the group's keys been taken, the group would wait 400 s.
    assert await limiter.acquire(BOT, GROUP) == 100.0
    assert await limiter.acquire(BOT, GROUP) == 100.0
    clock.advance(100)
    assert [await limiter.acquire(BOT, GROUP), await limiter.acquire(BOT, GROUP)] == [0.0, 400.0]


async def test_idle_keys_are_forgotten_past_the_bound() -> None:
    """Past `max_idle_keys`, keys whose TAT has passed are dropped and busy keys kept."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock, max_idle_keys=10)
    for chat_id in range(1, 5):  # 1 bot key + 4 chat keys
        clock.advance(1.1)
        await limiter.acquire(BOT, chat_id)
    await limiter.hold_chat(BOT, 99, 3600)
    assert len(limiter) == 6
    for chat_id in range(5, 10):
        clock.advance(1.1)
        await limiter.acquire(BOT, chat_id)
    # The 11th key triggered a sweep: only the bot key, the last chat and the held chat are busy.
    assert len(limiter) == 3
    assert await limiter.acquire(BOT, 99) == pytest.approx(3600 - 5 * 1.1)


async def test_factory_without_redis_url_keeps_limits_in_process() -> None:
    """No Redis URL gives the in-process limiter."""
    limiter = ratelimit.rate_limiter(None, Limits())
    assert isinstance(limiter, ratelimit.InProcessRateLimiter)
    await limiter.close()
