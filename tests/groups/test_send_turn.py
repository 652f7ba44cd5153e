"""A send job's turn with the rate limiter: a reservation, once made, is never lost to itself.

The chat and group keys count a job's reserved slot as soon as it is reserved. A job that
reserved anew after a refused start, or after running late, found its destination busy until
its own slot plus an interval, and sent a whole group interval late.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tgrelay import errors
from tgrelay.groups import delivery
from tgrelay.queue import retry
from tgrelay.queue.models import Job, JobState
from tgrelay.runtime import Runtime
from tgrelay.telegram.ratelimit import CLOCK_RATE_MARGIN, InProcessRateLimiter, Limits, Rate

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
TARGET = delivery._Destination(bot_id=BOT, chat_id=GROUP)
# The bot's window as the limiter checks it.
WINDOW = 1 * (1 + CLOCK_RATE_MARGIN)


class Clock:
    """One instant for both clocks the turn reads (the limiter's and the runtime's), which
    only the test, and the turn's sleeps, move."""

    def __init__(self) -> None:
        self.seconds = 1_000_000.0
        self.slept: list[float] = []
        # uvloop's timers may fire up to a millisecond before the time asked for.
        self.wakes_early_by = 0.0009

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return datetime.fromtimestamp(self.seconds, UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        clock.slept.append(seconds)
        assert len(clock.slept) < 10, "the turn keeps sleeping without time getting past"
        clock.seconds += seconds - clock.wakes_early_by
        await real_sleep(0)

    # The turn's own sleeps (the only ones while a test runs) move the fake clock instead.
    monkeypatch.setattr(asyncio, "sleep", sleep)
    return clock


class Transactions:
    """Stands in for the database: counts the transactions a turn opens of its own."""

    def __init__(self) -> None:
        self.opened = 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[str]:
        self.opened += 1
        yield f"transaction {self.opened}"


class Attempts:
    """The records of a notification part's attempt, by the transaction that wrote each."""

    def __init__(self) -> None:
        self.written_in: list[Any] = []

    def of(self, part: int) -> delivery.Attempt:
        async def record(conn: Any) -> None:
            self.written_in.append(conn)

        return delivery.Attempt(part=part, record=record)


@pytest.fixture
def rt(clock: Clock) -> Runtime:
    limiter = InProcessRateLimiter(LIMITS, clock=clock.monotonic)
    return cast(Runtime, SimpleNamespace(clock=clock.wall, rate_limiter=limiter, db=Transactions()))


def job(payload: dict[str, Any]) -> Job:
    now = datetime(2026, 11, 21, tzinfo=UTC)
    return Job(
        id=1,
        kind=delivery.SEND_NOTIFICATION,
        queue="default",
        payload=payload,
        ordering_key=None,
        after_id=None,
        subject_id=None,
        state=JobState.RUNNING,
        attempts=1,
        max_attempts=5,
        run_at=now,
        locked_by="w",
        lease_expires_at=None,
        last_error=None,
        created_at=now,
        finished_at=None,
    )


async def send_elsewhere(rt: Runtime, chat_id: int) -> None:
    """Another job's send of the bot, to a private chat, starting and answered now."""
    send_id = f"elsewhere {chat_id}"
    assert await rt.rate_limiter.start(BOT, chat_id, send_id) == 0.0
    await rt.rate_limiter.finish(BOT, chat_id, send_id, answered=True)


async def reserve_ahead(rt: Runtime, clock: Clock) -> tuple[dict[str, Any], float]:
    """A run that finds the bot's next slot ahead: the payload it carries, and the slot."""
    with pytest.raises(retry.Reschedule) as rescheduled:
        await delivery._Turn(rt, job({})).wait_for_slot(TARGET)
    assert rescheduled.value.reason == "Telegram send limits"
    assert rescheduled.value.payload is not None
    slot_at = rescheduled.value.payload[delivery.SLOT_AT]
    assert slot_at == pytest.approx(clock.seconds + rescheduled.value.delay + 0.05)
    return dict(rescheduled.value.payload), slot_at


async def run_at(rt: Runtime, clock: Clock, payload: dict[str, Any], when: float) -> None:
    """The job's next run at `when`, up to the moment it would call the Bot API."""
    clock.seconds = when
    turn = delivery._Turn(rt, job(payload))
    await turn.wait_for_slot(TARGET)
    async with turn.sending(TARGET):
        pass


async def test_a_refused_start_keeps_its_slot(rt: Runtime, clock: Clock) -> None:
    t0 = clock.seconds
    await send_elsewhere(rt, PRIVATE_CHATS[0])
    clock.seconds = t0 + 0.1  # a late run: two sends 0.1 s apart fill the bot's 1 s window
    await send_elsewhere(rt, PRIVATE_CHATS[1])
    clock.seconds = t0 + 0.2
    payload, slot_at = await reserve_ahead(rt, clock)
    assert slot_at == pytest.approx(t0 + 0.6)

    with pytest.raises(retry.Reschedule) as refused:
        await run_at(rt, clock, payload, slot_at)

    assert refused.value.reason == "recent sends fill the window"
    assert refused.value.delay == pytest.approx(WINDOW - 0.6 - delivery.SEND_LEAD_SECONDS)
    assert refused.value.payload is not None
    assert refused.value.payload[delivery.SLOT_AT] == pytest.approx(t0 + WINDOW)
    # Back when the window frees, it goes: not 3 s later, behind its own group reservation.
    await run_at(rt, clock, dict(refused.value.payload), t0 + WINDOW)


async def test_a_slot_run_late_is_used_not_reserved_again(rt: Runtime, clock: Clock) -> None:
    t0 = clock.seconds
    await send_elsewhere(rt, PRIVATE_CHATS[0])
    clock.seconds = t0 + 0.2
    payload, slot_at = await reserve_ahead(rt, clock)

    await run_at(rt, clock, payload, slot_at + 2.0)  # a busy worker: 2 s after its slot

    # The group's next send is spaced from this one, as it really started.
    slot = await rt.rate_limiter.reserve(BOT, GROUP)
    assert not slot.reserved
    assert slot.wait_seconds == pytest.approx(3.0)


async def test_a_short_refusal_is_waited_out_in_the_job(rt: Runtime, clock: Clock) -> None:
    t0 = clock.seconds
    await send_elsewhere(rt, PRIVATE_CHATS[0])
    clock.seconds = t0 + 0.48  # 20 ms short of the bot's spacing: a late run
    await send_elsewhere(rt, PRIVATE_CHATS[1])
    clock.seconds = t0 + 0.5
    payload, slot_at = await reserve_ahead(rt, clock)
    assert slot_at == pytest.approx(t0 + 0.98)

    await run_at(rt, clock, payload, slot_at)  # refused for about 20 ms, which it sleeps

    assert clock.slept[-1] == pytest.approx(WINDOW - 0.98 + delivery.TIMER_SLACK_SECONDS)
    assert clock.seconds == pytest.approx(t0 + WINDOW, abs=0.001)


async def test_a_chat_that_frees_soon_is_waited_for_even_by_a_timer_firing_early(
    rt: Runtime, clock: Clock
) -> None:
    t0 = clock.seconds
    assert await rt.rate_limiter.start(BOT, GROUP, "previous") == 0.0  # the group's last alert
    await rt.rate_limiter.finish(BOT, GROUP, "previous", answered=True)
    clock.seconds = t0 + 3.0 - 0.03  # the next one's run, 30 ms before the group frees

    await delivery._Turn(rt, job({})).wait_for_slot(TARGET)  # no Reschedule: it slept

    assert clock.slept == [pytest.approx(0.03 + delivery.TIMER_SLACK_SECONDS)]
    assert clock.seconds >= t0 + 3.0


async def test_an_attempt_rides_with_the_reschedule_that_carries_its_slot(
    rt: Runtime, clock: Clock
) -> None:
    """A send rescheduled to its slot records its attempt in the rescheduling transaction,
    and its next run sends without another: one transaction less per alert."""
    await send_elsewhere(rt, PRIVATE_CHATS[0])
    attempts = Attempts()
    with pytest.raises(retry.Reschedule) as rescheduled:
        await delivery._Turn(rt, job({})).wait_for_slot(TARGET, attempts.of(0))
    payload = rescheduled.value.payload
    assert payload is not None
    assert rescheduled.value.record is not None
    await rescheduled.value.record(cast(Any, "the reschedule's transaction"))

    turn = delivery._Turn(rt, job(dict(payload)))
    clock.seconds = payload[delivery.SLOT_AT]
    await turn.wait_for_slot(TARGET, attempts.of(0))

    assert (attempts.written_in, cast(Transactions, rt.db).opened) == (
        ["the reschedule's transaction"],
        0,
    )
    assert turn.marked(0)


async def test_a_send_that_goes_now_records_its_attempt_first(rt: Runtime) -> None:
    """With nothing to wait for, the attempt gets a transaction of its own before the send."""
    attempts = Attempts()
    turn = delivery._Turn(rt, job({}))

    await turn.wait_for_slot(TARGET, attempts.of(0))

    assert (attempts.written_in, turn.marked(0)) == (["transaction 1"], True)


async def test_a_send_counts_until_a_window_after_its_request_ended(
    rt: Runtime, clock: Clock
) -> None:
    """However the request ends (here Telegram's refusal), the limiter learns when: the group's
    next send waits a window from then, as that is when Telegram may have counted the first."""
    t0 = clock.seconds

    async def refused_slowly() -> None:
        async with delivery._Turn(rt, job({})).sending(TARGET):
            clock.seconds = t0 + 0.3  # a slow request
            raise RuntimeError("refused by Telegram")

    with pytest.raises(RuntimeError):
        await refused_slowly()
    clock.seconds = t0 + 3.0  # the group's next slot, one group interval after the start

    with pytest.raises(retry.Reschedule) as refused:
        async with delivery._Turn(rt, job({})).sending(TARGET):
            pass

    group_window = 3 * (1 + CLOCK_RATE_MARGIN)
    assert refused.value.reason == "recent sends fill the window"
    assert refused.value.delay == pytest.approx(
        0.3 + group_window - 3.0 - delivery.SEND_LEAD_SECONDS
    )


class FinishRecorder(InProcessRateLimiter):
    """The limiter, and what each finish was told."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(LIMITS, clock=clock.monotonic)
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
    rt: Runtime, clock: Clock, raised: Exception | None, answered: bool
) -> None:
    """Only an answer from Telegram, refusals included, lets the limiter take the path's
    fixed time off; a failed network or our own error leaves the end as the bound."""
    limiter = FinishRecorder(clock)
    turn = delivery._Turn(
        cast(Runtime, SimpleNamespace(**{**vars(rt), "rate_limiter": limiter})), job({})
    )

    async def send() -> None:
        async with turn.sending(TARGET):
            if raised is not None:
                raise raised

    if raised is None:
        await send()
    else:
        with pytest.raises(type(raised)):
            await send()
    assert limiter.answered == [answered]
