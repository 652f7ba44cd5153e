"""Unit tests for `tgrelay.telegram.ratelimit`: the pure scheduling core and the in-process limiter."""

from __future__ import annotations

import heapq
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
# The bot's and a chat's 1 s window, as the window check counts it.
WINDOW = 1 + ratelimit.CLOCK_RATE_MARGIN + ratelimit.WINDOW_EDGE_SECONDS


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
            {},  # free keys: reserved now, every key one interval on
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=0.0, reserved=True, new_states={"bot": 10.25, "chat": 11.0}),
        ),
        (
            {"bot": None, "chat": 4.0},  # an unknown key and a TAT in the past constrain nothing
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=0.0, reserved=True, new_states={"bot": 10.25, "chat": 11.0}),
        ),
        (
            {"bot": 10.0, "chat": 10.0},  # TATs of exactly now are free now
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=0.0, reserved=True, new_states={"bot": 10.25, "chat": 11.0}),
        ),
        (
            {"bot": 12.5, "chat": 9.0},  # a busy bot key: reserved ahead at its TAT
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=2.5, reserved=True, new_states={"bot": 12.75, "chat": 13.5}),
        ),
        (
            {"bot": 10.25, "chat": 12.5},  # a busy chat: nothing reserved, ask again when it frees
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=2.5, reserved=False),
        ),
        (
            {"bot": 10.25, "chat": 11.0, "group": 13.0},  # the latest destination TAT is the wait
            {"bot": 0.25, "chat": 1.0, "group": 3.0},
            10.0,
            Slot(wait_seconds=3.0, reserved=False),
        ),
        (
            {"bot": 11.0, "chat": 12.0},  # a refusal waits for the destination, not the bot key
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=2.0, reserved=False),
        ),
        (
            {"bot": 20.0, "chat": 12.0},  # a chat free by the bot's next slot: reserved there
            {"bot": 0.25, "chat": 1.0},
            10.0,
            Slot(wait_seconds=10.0, reserved=True, new_states={"bot": 20.25, "chat": 21.0}),
        ),
        (
            {"bot": 12.0, "chat": 12.0, "group": 12.0},  # every key free at that very instant
            {"bot": 0.25, "chat": 1.0, "group": 3.0},
            10.0,
            Slot(
                wait_seconds=2.0,
                reserved=True,
                new_states={"bot": 12.25, "chat": 13.0, "group": 15.0},
            ),
        ),
        (
            {"a": 99.0, "bot": 1.0},  # states of keys that do not apply are ignored
            {"bot": 0.5},
            10.0,
            Slot(wait_seconds=0.0, reserved=True, new_states={"bot": 10.5}),
        ),
    ],
)
def test_schedule(
    states: Mapping[str, float | None],
    intervals: Mapping[str, float],
    now: float,
    expected: Slot,
) -> None:
    """The first key is reserved ahead; the others must be free by its slot or nothing is reserved."""
    assert ratelimit.schedule(states, intervals, now) == expected


@pytest.mark.parametrize(
    ("chat_id", "expected"),
    [
        (
            PRIVATE,
            Slot(
                wait_seconds=2.0,
                reserved=True,
                new_states={"{1000}:bot": 12.0 + BOT_INTERVAL, "{1000}:chat:42": 12.0 + 1.04},
            ),
        ),
        (GROUP, Slot(wait_seconds=5.0, reserved=False)),
    ],
)
def test_schedule_uses_group_keys_only_for_negative_chat_ids(chat_id: int, expected: Slot) -> None:
    """A busy group key refuses a send to its group and leaves a private chat's slot alone."""
    states = {"{1000}:bot": 12.0, "{1000}:group:-100500": 15.0, "{1000}:group:42": 99.0}
    intervals = ratelimit.keys_for(BOT, chat_id, Limits())
    slot = ratelimit.schedule(states, intervals, 10.0)
    assert (slot.wait_seconds, slot.reserved) == (expected.wait_seconds, expected.reserved)
    assert slot.new_states == pytest.approx(expected.new_states)
    assert list(slot.new_states) == list(expected.new_states)


@pytest.mark.parametrize(
    ("states", "now", "expected"),
    [
        ({}, 10.0, {"bot": 10.25, "chat": 11.0}),  # unknown keys: one interval from now
        (
            {"bot": 9.0, "chat": 10.5},
            10.0,
            {"bot": 10.25, "chat": 11.0},
        ),  # spaced from the late send
        ({"bot": 12.0, "chat": 10.5}, 10.0, {"bot": 12.0, "chat": 11.0}),  # later TATs stay
    ],
)
def test_confirmed(
    states: Mapping[str, float | None], now: float, expected: dict[str, float]
) -> None:
    """A send that starts late moves each key to now plus its interval, never earlier than it was."""
    assert ratelimit.confirmed(states, {"bot": 0.25, "chat": 1.0}, now) == expected


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


def sends_per_key(limits: Limits, arrivals: list[tuple[float, int]]) -> dict[str, list[float]]:
    """Replay asks (time, chat) through `schedule`, a reserved one sent at its slot and a refused
    one asked again when told; the send times per key."""
    states: dict[str, float] = {}
    sent: dict[str, list[float]] = {}
    asks = [(at, order, chat_id) for order, (at, chat_id) in enumerate(arrivals)]
    heapq.heapify(asks)
    while asks:
        now, order, chat_id = heapq.heappop(asks)
        intervals = ratelimit.keys_for(BOT, chat_id, limits)
        slot = ratelimit.schedule({key: states.get(key) for key in intervals}, intervals, now)
        if not slot.reserved:
            assert slot.new_states == {}
            assert slot.wait_seconds > 0
            heapq.heappush(asks, (now + slot.wait_seconds, order, chat_id))
            continue
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
    """Whatever the arrivals, every send goes once and no `per_seconds` window of a key holds more than `count`."""
    limits = Limits(per_bot=rates[0], per_chat=rates[1], per_group=rates[2], safety=safety)
    stretch = span * max(rate.per_seconds for rate in rates)
    times = itertools.accumulate(gap * stretch for gap, _ in requests)
    arrivals = [(at, chat_id) for at, (_, chat_id) in zip(times, requests, strict=True)]
    sent = sends_per_key(limits, arrivals)
    assert len(sent.get(f"{{{BOT}}}:bot", [])) == len(arrivals)
    for key, times_sent in sent.items():
        rate = rates[0] if key.endswith(":bot") else rates[1] if ":chat:" in key else rates[2]
        assert most_in_any_window(times_sent, rate.per_seconds) <= rate.count, key


async def reserve_all(
    limiter: ratelimit.InProcessRateLimiter, bot_id: int, chats: list[int]
) -> list[Slot]:
    """Ask for one send per entry of `chats`, in order, at the clock's instant; the answers."""
    return [await limiter.reserve(bot_id, chat_id) for chat_id in chats]


async def send_when_told(
    limiter: ratelimit.InProcessRateLimiter, clock: FakeClock, chats: list[int]
) -> list[float]:
    """Ask for one send per entry of `chats` now, each asking again when told; when each is sent,
    from now, in the order of `chats`."""
    start = clock.now
    asks = [(start, order, chat_id) for order, chat_id in enumerate(chats)]
    sent: dict[int, float] = {}
    while asks:
        at, order, chat_id = heapq.heappop(asks)
        clock.now = at
        slot = await limiter.reserve(BOT, chat_id)
        if slot.reserved:
            sent[order] = at + slot.wait_seconds - start
        else:
            heapq.heappush(asks, (at + slot.wait_seconds, order, chat_id))
    return [sent[order] for order in range(len(chats))]


async def test_one_instant_reserves_each_chat_once_at_the_bot_interval() -> None:
    """40 asks over 20 chats at one instant: each chat's first is reserved one bot interval after the last; its second is told to come back when its chat interval ends, which is after the bot's next slot."""
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=FakeClock())
    chats = [1 + index % 20 for index in range(40)]
    slots = await reserve_all(limiter, BOT, chats)
    assert [slot.reserved for slot in slots] == [True] * 20 + [False] * 20
    # A chat reserved k bot intervals ahead frees 1.04 s = 30 bot intervals after that.
    assert [slot.wait_seconds for slot in slots] == pytest.approx(
        [k * BOT_INTERVAL for k in range(20)] + [(k + 30) * BOT_INTERVAL for k in range(20)]
    )


async def test_a_chat_that_frees_within_the_bot_backlog_is_reserved_at_once() -> None:
    """Asks for a chat that frees before the bot's queue reaches it get the bot's next slot right away, not a refusal to come back for."""
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=FakeClock())
    chats = [PRIVATE, *range(1, 40), PRIVATE]
    slots = await reserve_all(limiter, BOT, chats)
    assert [slot.reserved for slot in slots] == [True] * 41
    assert [slot.wait_seconds for slot in slots] == pytest.approx(
        [k * BOT_INTERVAL for k in range(41)]
    )


async def test_contending_sends_on_one_bot_are_spread_at_the_bot_interval() -> None:
    """90 sends over 30 chats asked at one instant, each asking again when told, go one stretched 1/30 s apart, never 30 in a second."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    sent = await send_when_told(limiter, clock, [1 + index % 30 for index in range(90)])
    assert sent == pytest.approx([k * BOT_INTERVAL for k in range(90)])
    assert most_in_any_window(sent, 1.0) == 29  # 1 s holds 28.8 stretched intervals: never 30


async def test_chat_is_refused_until_its_stretched_second_passes() -> None:
    """A chat that got a slot is refused, with the time left, until 1.04 s after it; then it is reserved at once."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    slots = await reserve_all(limiter, BOT, [PRIVATE, PRIVATE])
    clock.advance(0.5)
    slots.append(await limiter.reserve(BOT, PRIVATE))
    clock.advance(0.54)
    slots.append(await limiter.reserve(BOT, PRIVATE))
    assert [slot.reserved for slot in slots] == [True, False, False, True]
    assert [slot.wait_seconds for slot in slots] == pytest.approx([0.0, 1.04, 0.54, 0.0])


async def test_group_gets_twenty_sends_per_minute() -> None:
    """60 sends to one group asked at once, each asking again when told, go 3.12 s apart: 20 in the first minute and never 21 in any."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    sent = await send_when_told(limiter, clock, [GROUP] * 60)
    assert sent == pytest.approx([k * GROUP_INTERVAL for k in range(60)])
    assert most_in_any_window(sent, 60.0) == 20
    assert len([at for at in sent if at < 60]) == 20


async def test_busy_group_never_moves_the_bot_key() -> None:
    """Asks refused by a busy group reserve nothing, so the bot's next chat gets the very next bot slot."""
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=FakeClock())
    slots = await reserve_all(limiter, BOT, [GROUP, GROUP, GROUP, PRIVATE, OTHER_PRIVATE])
    assert [slot.reserved for slot in slots] == [True, False, False, True, True]
    assert [slot.wait_seconds for slot in slots] == pytest.approx(
        [0.0, GROUP_INTERVAL, GROUP_INTERVAL, BOT_INTERVAL, 2 * BOT_INTERVAL]
    )


async def test_hold_chat_refuses_that_chat_only() -> None:
    """After a 429 in one chat it is refused until retry_after ends, while the bot's other chats still get slots at once."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    await limiter.hold_chat(BOT, GROUP, 30)
    clock.advance(10)
    await limiter.hold_chat(BOT, GROUP, 5)  # a shorter, later retry_after shortens nothing
    held = await limiter.reserve(BOT, GROUP)
    assert (held.reserved, held.new_states) == (False, {})
    assert held.wait_seconds == pytest.approx(20.0)
    # The key property: the held chat delays none of the bot's other chats, nor other bots.
    others = await reserve_all(limiter, BOT, [PRIVATE, OTHER_PRIVATE, -7])
    others.append(await limiter.reserve(BOT + 1, GROUP))
    assert [slot.reserved for slot in others] == [True, True, True, True]
    assert [slot.wait_seconds for slot in others] == pytest.approx(
        [0.0, BOT_INTERVAL, 2 * BOT_INTERVAL, 0.0]
    )
    clock.advance(20)
    released = await limiter.reserve(BOT, GROUP)
    assert (released.reserved, released.wait_seconds) == (True, 0.0)


async def test_a_late_start_spaces_the_next_send_from_itself() -> None:
    """A reserved send that starts late keeps its chat busy for 1.04 s from then, not from its slot."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    await limiter.reserve(BOT, PRIVATE)
    clock.advance(0.5)
    assert await limiter.start(BOT, PRIVATE, "late") == 0.0
    await limiter.finish(BOT, PRIVATE, "late", answered=True)
    clock.advance(1.04 - 0.5 + 0.01)  # past the slot's chat interval, within the late send's
    slot = await limiter.reserve(BOT, PRIVATE)
    assert (slot.reserved, slot.new_states) == (False, {})
    assert slot.wait_seconds == pytest.approx(0.49)


def test_spacings_drop_the_stretch_where_a_window_holds_several_sends() -> None:
    assert ratelimit.spacings_for(BOT, GROUP, Limits()) == pytest.approx(
        {
            f"{{{BOT}}}:bot": 1 / 30,
            f"{{{BOT}}}:chat:{GROUP}": CHAT_INTERVAL,
            f"{{{BOT}}}:group:{GROUP}": 3.0,
        }
    )


@pytest.mark.parametrize(
    ("late_by", "next_wait"),
    [
        (0.1, 0.0),  # within the group's 120 ms of stretch: its next slot stays
        (0.5, 0.5 - GROUP_INTERVAL + 3.0),  # beyond it: pushed back by the rest
    ],
)
async def test_a_group_send_run_late_pushes_its_next_slot_only_past_the_stretch(
    late_by: float, next_wait: float
) -> None:
    """Lateness within the stretch does not add up over a group's sends; the window check
    still holds the group's real limit."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    assert (await limiter.reserve(BOT, GROUP)).wait_seconds == 0.0
    clock.advance(late_by)
    assert await limiter.start(BOT, GROUP, "late") == 0.0
    await limiter.finish(BOT, GROUP, "late", answered=True)
    clock.advance(GROUP_INTERVAL - late_by)  # the group's next slot as reserved
    slot = await limiter.reserve(BOT, GROUP)
    assert slot.wait_seconds == pytest.approx(next_wait)
    assert slot.reserved is (next_wait == 0.0)


async def send(limiter: ratelimit.InProcessRateLimiter, chat_id: int) -> float:
    """A send to `chat_id` answered the moment it started: the start's wait."""
    send_id = f"to {chat_id}"
    wait = await limiter.start(BOT, chat_id, send_id)
    await limiter.finish(BOT, chat_id, send_id, answered=True)
    return wait


async def test_starts_that_bunch_up_wait_for_the_window() -> None:
    """Runs late together cannot crowd a window: the 31st send within a second waits it out."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    waits = [await send(limiter, chat_id) for chat_id in range(1, 32)]
    assert waits[:30] == [0.0] * 30
    assert waits[30] == pytest.approx(WINDOW)
    clock.advance(WINDOW)
    assert await send(limiter, 31) == 0.0


async def test_a_send_counts_from_its_answer_and_in_flight_from_now() -> None:
    """Telegram counts a send when it arrives, somewhere before its answer: the chat's next
    send waits a window from the answer, and while none came, a window from any moment."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    assert await limiter.start(BOT, PRIVATE, "slow") == 0.0
    clock.advance(0.3)
    assert await limiter.start(BOT, PRIVATE, "next") == pytest.approx(WINDOW)  # "slow" in flight
    await limiter.finish(BOT, PRIVATE, "slow", answered=True)
    clock.advance(CHAT_INTERVAL - 0.3)  # the chat's next slot, one interval after the start
    assert await limiter.start(BOT, PRIVATE, "next") == pytest.approx(0.3 + WINDOW - CHAT_INTERVAL)
    clock.advance(0.3 + WINDOW - CHAT_INTERVAL)
    assert await limiter.start(BOT, PRIVATE, "next") == 0.0
    await limiter.finish(BOT, PRIVATE, "never started", answered=True)  # changes nothing
    assert await limiter.start(BOT, OTHER_PRIVATE, "other") == 0.0


@pytest.mark.parametrize(
    ("round_trip", "fixed", "expected"),
    [
        (0.3, 0.0, 10.0),  # no fixed time known: the answer itself
        (0.3, 0.1, 9.9),  # the fixed time comes off
        (0.05, 0.1, 9.95),  # but never more than the round trip: not before the start
    ],
)
def test_arrived_by(round_trip: float, fixed: float, expected: float) -> None:
    assert ratelimit.arrived_by(10.0, round_trip, fixed) == pytest.approx(expected)


def test_round_trips_are_trusted_after_a_few() -> None:
    round_trips = ratelimit.RoundTrips()
    for seconds in [0.2, 0.05, 0.3, 0.1, 0.4, 0.2, 0.3][: ratelimit.ROUND_TRIPS_TRUSTED - 1]:
        round_trips.add(seconds)
    assert round_trips.fixed() == 0.0
    round_trips.add(0.5)
    assert round_trips.fixed() == pytest.approx(0.05)


@pytest.mark.parametrize(("answered", "wait"), [(True, 0.3 - 0.01), (False, 0.3)])
async def test_a_slow_answer_counts_less_the_fixed_round_trip(answered: bool, wait: float) -> None:
    """Once sends showed the path takes 10 ms, a send answered after 300 ms may have arrived
    as late as 290 ms after its start; one the network failed, as late as its end."""
    clock = FakeClock()
    limiter = ratelimit.InProcessRateLimiter(Limits(), clock=clock)
    for chat_id in range(1, ratelimit.ROUND_TRIPS_TRUSTED + 1):
        assert await limiter.start(BOT, chat_id, f"to {chat_id}") == 0.0
        clock.advance(0.01)
        await limiter.finish(BOT, chat_id, f"to {chat_id}", answered=True)
    assert await limiter.start(BOT, PRIVATE, "slow") == 0.0
    clock.advance(0.3)
    await limiter.finish(BOT, PRIVATE, "slow", answered=answered)
    clock.advance(CHAT_INTERVAL - 0.3)  # the chat's next slot, one interval after the start
    assert await limiter.start(BOT, PRIVATE, "next") == pytest.approx(wait + WINDOW - CHAT_INTERVAL)


@pytest.mark.parametrize(
    ("arrivals", "now", "expected"),
    [
        ({}, 5.0, 0.0),
        ({"k": [0.0]}, 0.9, 0.0),  # one of two allowed
        ({"k": [0.0, 0.5]}, 0.9, 0.1),  # full until the start at 0.0 leaves the window
        ({"k": [0.0, 0.5]}, 1.0, 0.0),  # a start exactly one window ago no longer counts
        ({"k": [0.0, 0.5], "j": [0.8]}, 0.9, 0.9),  # the slowest key decides
        ({"j": [15.0]}, 0.9, 1.0),  # in flight: it may arrive now, so a whole window
        ({"k": [0.0, 15.0]}, 0.9, 0.1),  # in flight, but the older one still decides
        ({"k": [0.5, 15.0, 16.0]}, 0.9, 1.0),  # two in flight fill the window
    ],
)
def test_admit(arrivals: Mapping[str, list[float]], now: float, expected: float) -> None:
    """A start fits when every key had fewer than `count` sends that may have arrived in the
    window before it."""
    windows = {"k": (2, 1.0), "j": (1, 1.0)}
    assert ratelimit.admit(arrivals, windows, now) == pytest.approx(expected)


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
    slot = await limiter.reserve(BOT, 99)
    assert (slot.reserved, slot.new_states) == (False, {})
    assert slot.wait_seconds == pytest.approx(3600 - 5 * 1.1)
    assert len(limiter) == 3


async def test_factory_without_redis_url_keeps_limits_in_process() -> None:
    """No Redis URL gives the in-process limiter."""
    limiter = ratelimit.rate_limiter(None, Limits())
    assert isinstance(limiter, ratelimit.InProcessRateLimiter)
    await limiter.close()
