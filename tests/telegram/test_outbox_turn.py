"""A send job's turn with the rate limiter: a reservation, once made, is never lost to itself.

The chat and group keys count a job's reserved slot as soon as it is reserved. A job that
reserved anew after a refused start, or after running late, found its destination busy until
its own slot plus an interval, and sent a whole group interval late.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tgrelay import errors
from tgrelay.queue import retry
from tgrelay.telegram.outbox import turn as send_turn
from tgrelay.telegram.outbox.turn import Turn
from tgrelay.telegram.ratelimit import (
    CLOCK_RATE_MARGIN,
    WINDOW_EDGE_SECONDS,
    InProcessRateLimiter,
    Limits,
    Rate,
    Slot,
)

BOT = 7
GROUP = -100
PRIVATE_CHATS = (501, 502)
# Two sends per second for the bot, a group every 3 s, no safety stretch: easy to follow.
LIMITS = Limits(
    per_bot=Rate(count=2, per_seconds=1),
    per_chat=Rate(count=1, per_seconds=1),
    per_group=Rate(count=1, per_seconds=3),
    safety=0,
)
# The bot's window as the limiter checks it.
WINDOW = 1 * (1 + CLOCK_RATE_MARGIN) + WINDOW_EDGE_SECONDS
ATTEMPT = 1


class Clock:
    """One instant for the limiter and the turn, which only the test and the turn's sleeps move."""

    def __init__(self) -> None:
        self.seconds = 1_000_000.0
        self.slept: list[float] = []
        # uvloop's timers may fire up to a millisecond before the time asked for.
        self.wakes_early_by = 0.0009

    def now(self) -> float:
        return self.seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        assert len(self.slept) < 10, "the turn keeps sleeping without time getting past"
        self.seconds += seconds - self.wakes_early_by


class Saves:
    """Stands in for the job's row: the payloads a turn wrote in transactions of its own."""

    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    async def __call__(self, payload: Mapping[str, Any]) -> None:
        self.written.append(dict(payload))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> InProcessRateLimiter:
    return InProcessRateLimiter(LIMITS, clock=clock.now)


@pytest.fixture
def saves() -> Saves:
    return Saves()


@pytest.fixture
def new_turn(clock: Clock, limiter: InProcessRateLimiter, saves: Saves) -> Any:
    def make(payload: Mapping[str, Any], *, attempt: int = ATTEMPT, waited: Any = None) -> Turn:
        return Turn(
            limiter=limiter,
            payload=payload,
            attempt=attempt,
            clock=clock.now,
            sleep=clock.sleep,
            save=saves,
            waited=waited or (lambda seconds: None),
        )

    return make


async def send_elsewhere(limiter: InProcessRateLimiter, chat_id: int) -> None:
    """Another job's send of the bot, to a private chat, starting and answered now."""
    send_id = f"elsewhere {chat_id}"
    assert await limiter.start(BOT, chat_id, send_id) == 0.0
    await limiter.finish(BOT, chat_id, send_id, answered=True)


async def reserve_ahead(new_turn: Any, clock: Clock) -> tuple[dict[str, Any], float]:
    """A run that finds the bot's next slot ahead: the payload it carries, and the slot."""
    with pytest.raises(retry.Reschedule) as rescheduled:
        await new_turn({}).wait_for_slot(BOT, GROUP)
    assert rescheduled.value.reason == "Telegram send limits"
    assert rescheduled.value.payload is not None
    slot_at = rescheduled.value.payload[send_turn.SLOT_AT]
    assert slot_at == pytest.approx(clock.seconds + rescheduled.value.delay + 0.05)
    return dict(rescheduled.value.payload), slot_at


async def run_at(new_turn: Any, clock: Clock, payload: dict[str, Any], when: float) -> None:
    """The job's next run at `when`, up to the moment it would call the Bot API."""
    clock.seconds = when
    turn = new_turn(payload)
    await turn.wait_for_slot(BOT, GROUP)
    async with turn.sending(BOT, GROUP):
        pass


async def test_a_refused_start_keeps_its_slot(
    new_turn: Any, clock: Clock, limiter: InProcessRateLimiter
) -> None:
    """A start the window refuses comes back when the window frees, its reservation kept."""
    t0 = clock.seconds
    await send_elsewhere(limiter, PRIVATE_CHATS[0])
    clock.seconds = t0 + 0.1  # a late run: two sends 0.1 s apart fill the bot's 1 s window
    await send_elsewhere(limiter, PRIVATE_CHATS[1])
    clock.seconds = t0 + 0.2
    payload, slot_at = await reserve_ahead(new_turn, clock)
    assert slot_at == pytest.approx(t0 + 0.6)

    with pytest.raises(retry.Reschedule) as refused:
        await run_at(new_turn, clock, payload, slot_at)

    assert refused.value.reason == "recent sends fill the window"
    assert refused.value.delay == pytest.approx(WINDOW - 0.6 - send_turn.SEND_LEAD_SECONDS)
    assert refused.value.payload is not None
    assert refused.value.payload[send_turn.SLOT_AT] == pytest.approx(t0 + WINDOW)
    # Back when the window frees, it goes: not 3 s later, behind its own group reservation.
    await run_at(new_turn, clock, dict(refused.value.payload), t0 + WINDOW)


async def test_a_slot_run_late_is_used_not_reserved_again(
    new_turn: Any, clock: Clock, limiter: InProcessRateLimiter
) -> None:
    """A run 2 s after its slot sends at once, and the group's next send is spaced from it."""
    t0 = clock.seconds
    await send_elsewhere(limiter, PRIVATE_CHATS[0])
    clock.seconds = t0 + 0.2
    payload, slot_at = await reserve_ahead(new_turn, clock)

    await run_at(new_turn, clock, payload, slot_at + 2.0)  # a busy worker: 2 s after its slot

    slot = await limiter.reserve(BOT, GROUP)
    assert not slot.reserved
    assert slot.wait_seconds == pytest.approx(3.0)


async def test_a_short_refusal_is_waited_out_in_the_job(
    new_turn: Any, clock: Clock, limiter: InProcessRateLimiter
) -> None:
    """A start refused for 20 ms sleeps those 20 ms (with the given sleep) instead of leaving."""
    t0 = clock.seconds
    await send_elsewhere(limiter, PRIVATE_CHATS[0])
    clock.seconds = t0 + 0.48  # 20 ms short of the bot's spacing: a late run
    await send_elsewhere(limiter, PRIVATE_CHATS[1])
    clock.seconds = t0 + 0.5
    payload, slot_at = await reserve_ahead(new_turn, clock)
    assert slot_at == pytest.approx(t0 + 0.98)

    await run_at(new_turn, clock, payload, slot_at)  # refused for about 20 ms, which it sleeps

    assert clock.slept[-1] == pytest.approx(WINDOW - 0.98 + send_turn.TIMER_SLACK_SECONDS)
    assert clock.seconds == pytest.approx(t0 + WINDOW, abs=0.001)


async def test_a_chat_that_frees_soon_is_waited_for_even_by_a_timer_firing_early(
    new_turn: Any, clock: Clock, limiter: InProcessRateLimiter
) -> None:
    """A group free in 30 ms is slept for (with slack for early timers), not rescheduled."""
    t0 = clock.seconds
    assert await limiter.start(BOT, GROUP, "previous") == 0.0  # the group's last alert
    await limiter.finish(BOT, GROUP, "previous", answered=True)
    clock.seconds = t0 + 3.0 - 0.03  # the next one's run, 30 ms before the group frees

    await new_turn({}).wait_for_slot(BOT, GROUP)  # no Reschedule: it slept

    assert clock.slept == [pytest.approx(0.03 + send_turn.TIMER_SLACK_SECONDS)]
    assert clock.seconds >= t0 + 3.0


async def test_an_attempt_rides_with_the_reschedule_that_carries_its_slot(
    new_turn: Any, clock: Clock, limiter: InProcessRateLimiter, saves: Saves
) -> None:
    """A send rescheduled to its slot records its attempt in the rescheduling payload, and its
    next run sends without writing anything: one transaction less per send."""
    await send_elsewhere(limiter, PRIVATE_CHATS[0])
    with pytest.raises(retry.Reschedule) as rescheduled:
        await new_turn({}).wait_for_slot(BOT, GROUP)
    payload = rescheduled.value.payload
    assert payload is not None
    assert payload[send_turn.ATTEMPTED] == ATTEMPT

    turn = new_turn(dict(payload))
    clock.seconds = payload[send_turn.SLOT_AT]
    await turn.wait_for_slot(BOT, GROUP)

    assert (saves.written, turn.marked(), turn.attempted_unrecorded()) == ([], True, False)


async def test_a_send_that_goes_now_records_its_attempt_first(
    new_turn: Any, clock: Clock, saves: Saves
) -> None:
    """With nothing to wait for, the attempt is saved to the job's row before the send."""
    turn = new_turn({})

    await turn.wait_for_slot(BOT, GROUP)

    assert saves.written == [{send_turn.ASKED_AT: clock.seconds, send_turn.ATTEMPTED: ATTEMPT}]
    assert turn.marked()


@pytest.mark.parametrize(
    ("recorded", "attempt", "unrecorded"),
    [
        (None, 2, False),  # never attempted
        (2, 2, False),  # this attempt's own record, carried by its reschedule
        (1, 2, True),  # attempt 1 recorded it and then crashed or lost the network
    ],
)
def test_a_record_of_another_attempt_is_a_possible_duplicate(
    new_turn: Any, recorded: int | None, attempt: int, unrecorded: bool
) -> None:
    """Only a record left by another attempt means a request may have gone without its
    outcome; it is counted once, as the run forgets it."""
    payload = {} if recorded is None else {send_turn.ATTEMPTED: recorded}
    turn = new_turn(payload, attempt=attempt)

    assert (turn.attempted_unrecorded(), turn.attempted_unrecorded()) == (unrecorded, False)


async def test_a_send_counts_until_a_window_after_its_request_ended(
    new_turn: Any, clock: Clock
) -> None:
    """However the request ends (here Telegram's refusal), the limiter learns when: the group's
    next send waits a window from then, as that is when Telegram may have counted the first."""
    t0 = clock.seconds

    async def refused_slowly() -> None:
        async with new_turn({}).sending(BOT, GROUP):
            clock.seconds = t0 + 0.3  # a slow request
            raise RuntimeError("refused by Telegram")

    with pytest.raises(RuntimeError):
        await refused_slowly()
    clock.seconds = t0 + 3.0  # the group's next slot, one group interval after the start

    with pytest.raises(retry.Reschedule) as refused:
        async with new_turn({}).sending(BOT, GROUP):
            pass

    group_window = 3 * (1 + CLOCK_RATE_MARGIN) + WINDOW_EDGE_SECONDS
    assert refused.value.reason == "recent sends fill the window"
    assert refused.value.delay == pytest.approx(
        0.3 + group_window - 3.0 - send_turn.SEND_LEAD_SECONDS
    )


async def test_the_wait_for_a_turn_is_reported_when_the_request_starts(
    new_turn: Any, clock: Clock, limiter: InProcessRateLimiter
) -> None:
    """From the first ask to the start, across the reschedule to its slot, is what it waited."""
    waits: list[float] = []
    await send_elsewhere(limiter, PRIVATE_CHATS[0])
    asked = clock.seconds
    payload, slot_at = await reserve_ahead(new_turn, clock)

    clock.seconds = slot_at
    turn = new_turn(payload, waited=waits.append)
    await turn.wait_for_slot(BOT, GROUP)
    async with turn.sending(BOT, GROUP):
        pass

    assert waits == [pytest.approx(slot_at - asked)]


class FinishRecorder(InProcessRateLimiter):
    """The limiter, and what each finish was told."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(LIMITS, clock=clock.now)
        self.answered: list[bool] = []

    async def finish(self, bot_id: int, chat_id: int, send_id: str, *, answered: bool) -> None:
        self.answered.append(answered)
        await super().finish(bot_id, chat_id, send_id, answered=answered)


@pytest.mark.parametrize(
    ("raised", "answered"),
    [
        (None, True),
        (errors.TelegramRetryAfter("429", retry_after=1), True),
        (errors.TelegramForbidden("kicked"), True),
        (errors.TelegramUnavailable("timed out"), False),
        (errors.TelegramCircuitOpen("open", retry_after=30), False),
        (RuntimeError("a bug"), False),
    ],
)
async def test_a_send_is_answered_unless_the_way_to_telegram_failed(
    clock: Clock, saves: Saves, raised: Exception | None, answered: bool
) -> None:
    """Only an answer from Telegram, refusals included, lets the limiter take the path's
    fixed time off; a failed network or our own error leaves the end as the bound."""
    limiter = FinishRecorder(clock)
    turn = Turn(
        limiter=limiter, payload={}, attempt=1, clock=clock.now, sleep=clock.sleep, save=saves
    )

    async def send() -> None:
        async with turn.sending(BOT, GROUP):
            if raised is not None:
                raise raised

    if raised is None:
        await send()
    else:
        with pytest.raises(type(raised)):
            await send()
    assert limiter.answered == [answered]


class Unreachable(InProcessRateLimiter):
    """The limiter while its Redis is down (after `down()`): no call grants a turn."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(LIMITS, clock=clock.now)
        self.is_down = False

    def down(self) -> None:
        self.is_down = True

    async def reserve(self, bot_id: int, chat_id: int) -> Slot:
        self._fail()
        return await super().reserve(bot_id, chat_id)

    async def start(self, bot_id: int, chat_id: int, send_id: str) -> float:
        self._fail()
        return await super().start(bot_id, chat_id, send_id)

    def _fail(self) -> None:
        if self.is_down:
            raise errors.StorageUnavailable("Redis failed for the rate limiter (ConnectionError)")


async def test_an_unreachable_limiter_reschedules_a_new_send_without_a_slot(
    clock: Clock, saves: Saves
) -> None:
    """With the limiter unreachable, a send asking for its turn is rescheduled to ask again
    soon, carrying no slot, and nothing is written for it (fail closed)."""
    limiter = Unreachable(clock)
    limiter.down()
    turn = Turn(
        limiter=limiter, payload={}, attempt=1, clock=clock.now, sleep=clock.sleep, save=saves
    )

    with pytest.raises(retry.Reschedule) as rescheduled:
        await turn.wait_for_slot(BOT, GROUP)

    assert (rescheduled.value.delay, rescheduled.value.reason, rescheduled.value.payload) == (
        send_turn.LIMITER_DOWN_RETRY_SECONDS,
        "the rate limiter is unreachable",
        {send_turn.ASKED_AT: clock.seconds},
    )
    assert saves.written == []


async def test_an_unreachable_limiter_at_the_start_keeps_the_request_from_going(
    clock: Clock, saves: Saves
) -> None:
    """A send whose slot came while the limiter was reachable, and whose start finds it
    unreachable, never reaches its request; it comes back to reserve anew, and its next run
    (the reschedule gives the attempt back) counts no possible duplicate."""
    limiter = Unreachable(clock)
    turn = Turn(
        limiter=limiter, payload={}, attempt=1, clock=clock.now, sleep=clock.sleep, save=saves
    )
    await turn.wait_for_slot(BOT, GROUP)  # free: records the attempt, and goes now
    limiter.down()
    requests = []

    with pytest.raises(retry.Reschedule) as rescheduled:
        async with turn.sending(BOT, GROUP):
            requests.append("sendMessage")

    assert requests == []
    assert rescheduled.value.delay == send_turn.LIMITER_DOWN_RETRY_SECONDS
    payload = rescheduled.value.payload
    assert payload == {send_turn.ASKED_AT: clock.seconds, send_turn.ATTEMPTED: 1}
    again = Turn(
        limiter=limiter, payload=payload, attempt=1, clock=clock.now, sleep=clock.sleep, save=saves
    )
    assert (again.attempted_unrecorded(), again.marked()) == (False, True)
