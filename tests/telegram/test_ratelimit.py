"""Unit tests for `tgrelay.telegram.ratelimit`: the pure scheduling core and the in-process limiter."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgrelay.telegram import ratelimit
from tgrelay.telegram.ratelimit import Limits, Rate, Slot

BOT = 1000
PRIVATE = 42
OTHER_PRIVATE = 43
GROUP = -100500
# Telegram's spacing stretched by the default safety of 4 %.
BOT_INTERVAL = 1 / 30 * 1.04
CHAT_INTERVAL = 1.04
GROUP_INTERVAL = 3 * 1.04


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
            {},  # free keys: send now, every key one interval on
            {"a": 1.0, "b": 0.5},
            10.0,
            Slot(wait_seconds=0.0, new_states={"a": 11.0, "b": 10.5}),
        ),
        (
            {"a": None, "b": 4.0},  # an unknown key and a TAT in the past constrain nothing
            {"a": 1.0, "b": 0.5},
            10.0,
            Slot(wait_seconds=0.0, new_states={"a": 11.0, "b": 10.5}),
        ),
        (
            {"a": 10.0},  # a TAT of exactly now is a slot now
            {"a": 1.0},
            10.0,
            Slot(wait_seconds=0.0, new_states={"a": 11.0}),
        ),
        (
            {"bot": 10.25, "chat": 12.5},  # a busy chat: wait for its TAT, every key moves past it
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=2.5, new_states={"bot": 12.75, "chat": 13.5}),
        ),
        (
            {"bot": 14.0, "chat": 12.5, "group": 3.0},  # the latest TAT sets the slot for all
            {"bot": 0.25, "chat": 1.0, "group": 3.0},
            10.0,
            Slot(wait_seconds=4.0, new_states={"bot": 14.25, "chat": 15.0, "group": 17.0}),
        ),
        (
            {"a": 99.0, "b": 1.0},  # states of keys that do not apply are ignored
            {"b": 0.5},
            10.0,
            Slot(wait_seconds=0.0, new_states={"b": 10.5}),
        ),
    ],
)
def test_schedule(
    states: Mapping[str, float | None],
    intervals: Mapping[str, float],
    now: float,
    expected: Slot,
) -> None:
    """The slot is the latest of now and every TAT, and each key moves to the slot plus its interval."""
    assert ratelimit.schedule(states, intervals, now) == expected


@pytest.mark.parametrize(
    ("chat_id", "expected"),
    [
        (
            PRIVATE,
            Slot(
                wait_seconds=2.0,
                new_states={"{1000}:bot": 12.0 + BOT_INTERVAL, "{1000}:chat:42": 12.0 + 1.04},
            ),
        ),
        (
            GROUP,
            Slot(
                wait_seconds=5.0,
                new_states={
                    "{1000}:bot": 15.0 + BOT_INTERVAL,
                    "{1000}:chat:-100500": 15.0 + CHAT_INTERVAL,
                    "{1000}:group:-100500": 15.0 + GROUP_INTERVAL,
                },
            ),
        ),
    ],
)
def test_schedule_uses_group_keys_only_for_negative_chat_ids(chat_id: int, expected: Slot) -> None:
    """A busy group key delays a send to its group and leaves a private chat's slot alone."""
    states = {"{1000}:bot": 12.0, "{1000}:group:-100500": 15.0, "{1000}:group:42": 99.0}
    intervals = ratelimit.keys_for(BOT, chat_id, Limits())
    slot = ratelimit.schedule(states, intervals, 10.0)
    assert slot.wait_seconds == expected.wait_seconds
    assert slot.new_states == pytest.approx(expected.new_states)
    assert list(slot.new_states) == list(expected.new_states)


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
        (PRIVATE, {"{1000}:bot": 1 / 30 * 1.04, "{1000}:chat:42": 1.04}),
        (
            GROUP,
            {
                "{1000}:bot": 1 / 30 * 1.04,
                "{1000}:chat:-100500": 1.04,
                "{1000}:group:-100500": 3 * 1.04,
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


def sends_per_key(limits: Limits, requests: list[tuple[float, int]]) -> dict[str, list[float]]:
    """Replay reservations (time, chat) through `schedule`, each sent at its slot; send times per key."""
    states: dict[str, float] = {}
    sent: dict[str, list[float]] = {}
    for now, chat_id in requests:
        intervals = ratelimit.keys_for(BOT, chat_id, limits)
        slot = ratelimit.schedule({key: states.get(key) for key in intervals}, intervals, now)
        states.update(slot.new_states)
        for key in intervals:
            sent.setdefault(key, []).append(now + slot.wait_seconds)
    return sent


def most_in_any_window(times: list[float], width: float) -> int:
    """The largest number of times in one window (t - width, t]."""
    # A busiest window can always be slid left until it ends at one of the times.
    return max(sum(1 for other in times if end - width < other <= end) for end in times)


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
            st.floats(min_value=0, max_value=0.05),  # gap since the previous request, scaled
            st.sampled_from([PRIVATE, OTHER_PRIVATE, GROUP, GROUP - 1]),
        ),
        max_size=120,
    ),
)
def test_no_window_holds_more_sends_than_the_rate(
    rates: list[Rate], safety: float, span: float, requests: list[tuple[float, int]]
) -> None:
    """Whatever the arrivals, sends at their slots put at most `count` in any `per_seconds` window of a key."""
    limits = Limits(per_bot=rates[0], per_chat=rates[1], per_group=rates[2], safety=safety)
    stretch = span * max(rate.per_seconds for rate in rates)
    times = itertools.accumulate(gap * stretch for gap, _ in requests)
    arrivals = [(at, chat_id) for at, (_, chat_id) in zip(times, requests, strict=True)]
    for key, sent in sends_per_key(limits, arrivals).items():
        rate = rates[0] if key.endswith(":bot") else rates[1] if ":chat:" in key else rates[2]
        assert most_in_any_window(sent, rate.per_seconds) <= rate.count, key


async def reserve_all(
    limiter: ratelimit.InProcessRateLimiter, bot_id: int, chats: list[int]
) -> list[float]:
    """Reserve one send per entry of `chats`, in order; the waits."""
    return [await limiter.reserve(bot_id, chat_id) for chat_id in chats]


async def test_contending_sends_on_one_bot_are_spread_at_the_bot_interval() -> None:
    """90 sends over 30 chats asked at one instant get slots one stretched 1/30 s apart, 30 per second."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    chats = [1 + index % 30 for index in range(90)]
    waits = await reserve_all(limiter, BOT, chats)
    assert waits == pytest.approx([k * BOT_INTERVAL for k in range(90)])
    assert most_in_any_window(waits, 1.0) == 29  # 1 s holds 28.8 stretched intervals: never 30


async def test_chat_gets_one_send_per_stretched_second() -> None:
    """Sends to one chat are queued 1.04 s apart, counted from when each was asked."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    first = await reserve_all(limiter, BOT, [PRIVATE] * 3)
    clock.advance(0.5)
    later = await limiter.reserve(BOT, PRIVATE)
    assert [*first, later] == pytest.approx([0.0, 1.04, 2.08, 3.12 - 0.5])


async def test_group_gets_twenty_sends_per_minute() -> None:
    """Sends to one group are queued 3.12 s apart: 20 in the first minute and never 21 in any."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    waits = await reserve_all(limiter, BOT, [GROUP] * 60)
    assert waits == pytest.approx([k * GROUP_INTERVAL for k in range(60)])
    assert most_in_any_window(waits, 60.0) == 20
    assert len([wait for wait in waits if wait < 60]) == 20


async def test_hold_chat_delays_that_chats_later_reservations_only() -> None:
    """After a 429 in one chat its next slot is at retry_after; other chats and bots go now."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    await limiter.hold_chat(BOT, GROUP, 30)
    clock.advance(10)
    await limiter.hold_chat(BOT, GROUP, 5)  # a shorter, later retry_after shortens nothing
    assert [
        await limiter.reserve(BOT, PRIVATE),
        await limiter.reserve(BOT + 1, GROUP),
        await limiter.reserve(BOT, GROUP),
        await limiter.reserve(BOT, GROUP),
    ] == pytest.approx([0.0, 0.0, 20.0, 20.0 + GROUP_INTERVAL])


async def test_idle_keys_are_forgotten_past_the_bound() -> None:
    """Past `max_idle_keys`, keys whose TAT has passed are dropped and busy keys kept."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock, max_idle_keys=10)
    for chat_id in range(1, 5):  # 1 bot key + 4 chat keys
        clock.advance(1.1)
        await limiter.reserve(BOT, chat_id)
    await limiter.hold_chat(BOT, 99, 3600)
    assert len(limiter) == 6
    for chat_id in range(5, 10):
        clock.advance(1.1)
        await limiter.reserve(BOT, chat_id)
    # The 11th key triggered a sweep: only the bot key, the last chat and the held chat are busy.
    assert len(limiter) == 3
    assert await limiter.reserve(BOT, 99) == pytest.approx(3600 - 5 * 1.1)


async def test_factory_without_redis_url_keeps_limits_in_process() -> None:
    """No Redis URL gives the in-process limiter."""
    limiter = ratelimit.rate_limiter(None, Limits())
    assert isinstance(limiter, ratelimit.InProcessRateLimiter)
    await limiter.close()
