"""Flood control: the sliding-window rule, and 429s from sendMessage once it is switched on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import Emulator, flood

from .conftest import ALICE, BOB, OPS_GROUP, load_fixture

PER_SECOND = flood.Limit(count=1, window=1.0)
THREE_PER_MINUTE = flood.Limit(count=3, window=60.0)


@pytest.mark.parametrize(
    ("sends", "limit", "now", "wait"),
    [
        ([], PER_SECOND, 10.0, 0.0),
        ([9.0], PER_SECOND, 10.0, 0.0),  # exactly one window ago: out of (now - 1, now]
        ([9.5], PER_SECOND, 10.0, 0.5),
        ([10.0], PER_SECOND, 10.0, 1.0),
        ([1.0, 2.0], THREE_PER_MINUTE, 10.0, 0.0),
        ([1.0, 2.0, 3.0], THREE_PER_MINUTE, 10.0, 51.0),
        ([3.0, 1.0, 2.0, 0.5], THREE_PER_MINUTE, 10.0, 51.0),  # order does not matter
        ([-55.0, 1.0, 2.0, 3.0], THREE_PER_MINUTE, 10.0, 51.0),  # older sends are ignored
    ],
)
def test_wait_for_slot(sends: list[float], limit: flood.Limit, now: float, wait: float) -> None:
    """The wait is until the oldest send that keeps the window full leaves it."""
    assert flood.wait_for_slot(sends, limit, now) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("wait", "retry_after"), [(0.01, 1), (0.5, 1), (1.0, 1), (1.2, 2), (51.0, 51), (59.9, 60)]
)
def test_retry_after_rounds_up_to_whole_seconds(wait: float, retry_after: int) -> None:
    """Telegram states whole seconds, rounded up and never below one."""
    assert flood.retry_after(wait) == retry_after


@pytest.mark.parametrize(
    ("chat_sends", "bot_sends", "is_group", "expected"),
    [
        ([], [], True, None),
        ([9.5], [9.5], False, 1),  # per chat: 1 a second
        ([], [9.9] * 3, False, 1),  # per bot: 3 a second here
        ([-55.0, 5.0], [5.0], True, None),  # per group: the older send has left the minute
        ([5.0, 4.0], [5.0, 4.0], True, 54),  # per group: 2 a minute here
        ([5.0, 4.0], [5.0, 4.0], False, None),  # private chats have no per-group limit
    ],
    ids=["nothing-sent", "per-chat", "per-bot", "group-under", "group-over", "private"],
)
def test_verdict_checks_every_limit(
    chat_sends: list[float],
    bot_sends: list[float],
    is_group: bool,
    expected: int | None,
) -> None:
    """A send is refused by whichever limit is full, with the longest wait of them."""
    limits = flood.Limits(
        per_chat=flood.Limit(count=1, window=1.0),
        per_group=flood.Limit(count=2, window=60.0),
        per_bot=flood.Limit(count=3, window=1.0),
    )
    verdict = flood.verdict(
        chat_sends=chat_sends, bot_sends=bot_sends, is_group=is_group, limits=limits, now=10.0
    )
    assert verdict == expected


class FakeTime:
    """A monotonic time source the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def emulator(time: FakeTime) -> AsyncIterator[Emulator]:
    clock = Clock(start=datetime(2025, 11, 21, 4, 48, 20, tzinfo=UTC))
    async with Emulator(clock=clock, seed=7, monotonic=time) as emulator:
        yield emulator


async def test_flood_is_off_by_default(client: httpx.AsyncClient, emulator: Emulator) -> None:
    """Without switching it on, a burst goes through and is only counted."""
    bot = emulator.create_bot("relay_bot")
    emulator.send_message(bot.id, ALICE, None, "hi")
    statuses = [
        (
            await client.post(
                f"/bot{bot.token}/sendMessage", json={"chat_id": ALICE["id"], "text": "x"}
            )
        ).status_code
        for _ in range(5)
    ]
    report = await client.get("/_emulator/flood")
    assert (statuses, report.json()) == (
        [200] * 5,
        {
            "enabled": False,
            "per_chat": [1, 1.0],
            "per_group": [20, 60.0],
            "per_bot": [30, 1.0],
            "rejected": 0,
            "rejected_by_chat": {},
            "sent_by_chat": {str(ALICE["id"]): 5},
            "sent_at": [[ALICE["id"], 0.0]] * 5,  # the fake clock stands still
            "rejected_at": [],
        },
    )


async def test_sends_over_a_limit_get_429_and_are_not_stored(
    client: httpx.AsyncClient, emulator: Emulator, time: FakeTime
) -> None:
    """Per chat, per group and per bot limits answer 429 with retry_after; refused texts vanish."""
    bot = emulator.create_bot("relay_bot")
    emulator.send_message(bot.id, ALICE, None, "hi")
    emulator.send_message(bot.id, BOB, None, "hi")
    emulator.send_message(bot.id, ALICE, OPS_GROUP, "hi")
    put = await client.put(
        "/_emulator/flood",
        json={"enabled": True, "per_chat": [1, 1.0], "per_group": [2, 60.0], "per_bot": [3, 1.0]},
    )

    async def send(chat_id: int, text: str) -> tuple[int, dict[str, object]]:
        response = await client.post(
            f"/bot{bot.token}/sendMessage", json={"chat_id": chat_id, "text": text}
        )
        return response.status_code, response.json()

    answers = [await send(ALICE["id"], "one"), await send(ALICE["id"], "two")]
    time.now += 0.25
    answers += [await send(BOB["id"], "three"), await send(OPS_GROUP["id"], "four")]
    answers.append(
        await send(OPS_GROUP["id"], "five")
    )  # per chat, and per bot: 3 in the last second
    time.now += 1.0
    answers.append(await send(OPS_GROUP["id"], "six"))
    time.now += 1.0
    answers.append(await send(OPS_GROUP["id"], "seven"))  # per group: 2 a minute
    retry = load_fixture("error_429_flood")
    refusal = {
        **retry,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    assert [status for status, _ in answers] == [200, 429, 200, 200, 429, 200, 429]
    assert (answers[1][1], answers[4][1], answers[6][1]) == (
        refusal,
        refusal,
        {
            **retry,
            "description": "Too Many Requests: retry after 58",
            "parameters": {"retry_after": 58},
        },
    )
    assert [m["text"] for m in emulator.sent_messages(OPS_GROUP["id"])] == ["four", "six"]
    report = (await client.get("/_emulator/flood")).json()
    assert (
        put.json()["per_group"],
        report["rejected"],
        report["rejected_by_chat"],
        report["sent_by_chat"],
        report["sent_at"],
        report["rejected_at"],
    ) == (
        [2, 60.0],
        3,
        {str(ALICE["id"]): 1, str(OPS_GROUP["id"]): 2},
        {str(ALICE["id"]): 1, str(BOB["id"]): 1, str(OPS_GROUP["id"]): 2},
        # Accepted sends only, timed from the PUT that switched flood control on.
        [[ALICE["id"], 0.0], [BOB["id"], 0.25], [OPS_GROUP["id"], 0.25], [OPS_GROUP["id"], 1.25]],
        [[ALICE["id"], 0.0], [OPS_GROUP["id"], 0.25], [OPS_GROUP["id"], 2.25]],
    )


async def test_flood_settings_are_checked_and_can_be_switched_off(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """Nonsense limits are 400; switching off restores Telegram's defaults and lets sends through."""
    bad = await client.put("/_emulator/flood", json={"enabled": True, "per_chat": [0, 1.0]})
    emulator.set_flood_control(limits=flood.Limits(per_chat=flood.Limit(count=5, window=2.0)))
    on = emulator.flood_report()
    off = await client.put("/_emulator/flood", json={"enabled": False})
    assert (
        bad.status_code,
        on["enabled"],
        on["per_chat"],
        off.json()["enabled"],
        off.json()["per_chat"],
    ) == (
        400,
        True,
        [5, 2.0],
        False,
        [1, 1.0],
    )


async def test_latency_holds_each_request_a_random_time_up_to_it(
    client: httpx.AsyncClient, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With latency set, every Bot API request first waits a random time within it (so flood
    control counts it only then); 0 is off, and a latency out of range is 400."""
    held: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        held.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    bot = emulator.create_bot("relay_bot")
    assert (await client.post(f"/bot{bot.token}/getMe")).status_code == 200
    assert held == []  # off by default
    put = await client.put("/_emulator/latency", json={"min_seconds": 0.1, "max_seconds": 0.2})
    for _ in range(20):
        assert (await client.post(f"/bot{bot.token}/getMe")).status_code == 200
    refused = [
        (await client.put("/_emulator/latency", json=body)).status_code
        for body in (
            {"max_seconds": -1},
            {"max_seconds": 6},
            {"min_seconds": 0.3, "max_seconds": 0.2},
            {"seconds": 1},
        )
    ]
    shown = await client.get("/_emulator/latency")
    assert (put.json(), shown.json(), refused) == (
        {"min_seconds": 0.1, "max_seconds": 0.2},
        {"min_seconds": 0.1, "max_seconds": 0.2},
        [400, 400, 400, 400],
    )
    assert len(held) == 20
    assert all(0.1 <= seconds <= 0.2 for seconds in held)
    assert len(set(held)) > 1  # random, not one fixed delay
