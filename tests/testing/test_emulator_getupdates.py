"""getUpdates: offsets confirm, limits cut, long polls wait, and only one poller may wait."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import ALICE, BOB, OPS_GROUP, load_fixture


async def get_updates(client: httpx.AsyncClient, bot: BotRecord, **params: Any) -> tuple[int, Any]:
    response = await client.post(f"/bot{bot.token}/getUpdates", json=params)
    body = response.json()
    return response.status_code, body.get("result", body)


def ids(updates: list[dict[str, Any]]) -> list[int]:
    return [update["update_id"] for update in updates]


async def test_updates_match_telegrams_shape(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A user's /start arrives as an Update shaped like Telegram's, bot_command entity included."""
    update = emulator.send_message(bot.id, ALICE, None, "/start AbC123_-xyz")
    status, result = await get_updates(client, bot)
    expected = load_fixture("update_private_start_payload")
    expected["update_id"] = update["update_id"]
    expected["message"].update(message_id=1, date=emulator.clock.timestamp())
    assert (status, result) == (200, [expected])


async def test_update_ids_grow_from_a_large_base(emulator: Emulator, bot: BotRecord) -> None:
    """Update ids start at a nine-digit number and grow by one per update."""
    first = emulator.send_message(bot.id, ALICE, None, "one")["update_id"]
    second = emulator.send_message(bot.id, BOB, OPS_GROUP, "two")["update_id"]
    assert (100_000_000 <= first < 1_000_000_000, second - first) == (True, 1)


async def test_offset_confirms_and_limit_cuts(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Updates below the offset are forgotten for good; limit caps how many come back."""
    sent = [emulator.send_message(bot.id, ALICE, None, f"m{n}")["update_id"] for n in range(5)]
    unconfirmed = await get_updates(client, bot, limit=2)
    again = await get_updates(client, bot, limit=2)
    confirmed = await get_updates(client, bot, offset=sent[2], limit=100)
    rest = await get_updates(client, bot)
    assert (ids(unconfirmed[1]), ids(again[1]), ids(confirmed[1]), ids(rest[1])) == (
        sent[:2],
        sent[:2],
        sent[2:],
        sent[2:],
    )


async def test_negative_offset_keeps_only_the_last(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """offset=-N returns the last N updates and forgets everything before them."""
    sent = [emulator.send_message(bot.id, ALICE, None, f"m{n}")["update_id"] for n in range(4)]
    _, last_two = await get_updates(client, bot, offset=-2)
    _, remaining = await get_updates(client, bot)
    assert (ids(last_two), ids(remaining)) == (sent[2:], sent[2:])


async def test_long_poll_returns_as_soon_as_an_update_arrives(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A waiting getUpdates answers with the update a user sends while it waits."""
    poll = asyncio.create_task(get_updates(client, bot, timeout=30))
    await asyncio.sleep(0.05)
    update = emulator.send_message(bot.id, ALICE, None, "are you there?")
    assert await asyncio.wait_for(poll, 5) == (200, [update])


async def test_long_poll_times_out_empty(client: httpx.AsyncClient, bot: BotRecord) -> None:
    """With nothing to deliver, getUpdates answers [] when its timeout runs out."""
    assert await get_updates(client, bot, timeout=1) == (200, [])


async def test_second_poller_terminates_the_first(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A new getUpdates ends the waiting one with 409; the new one gets the updates."""
    first = asyncio.create_task(get_updates(client, bot, timeout=30))
    async with asyncio.timeout(5):
        while not emulator.polls.waiting(bot.id):
            await asyncio.sleep(0.005)
    second = asyncio.create_task(get_updates(client, bot, timeout=30))
    terminated = await asyncio.wait_for(first, 5)
    update = emulator.send_message(bot.id, ALICE, None, "hello")
    assert (terminated, await asyncio.wait_for(second, 5)) == (
        (409, load_fixture("error_409_other_poller")),
        (200, [update]),
    )


async def test_get_updates_conflicts_with_a_webhook(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """getUpdates is 409 while a webhook is set, also for a poll that was already waiting."""
    waiting = asyncio.create_task(get_updates(client, bot, timeout=30))
    await asyncio.sleep(0.05)
    emulator.set_webhook_as_foreign(bot.id, "http://127.0.0.1:9/hook")
    conflict = (409, load_fixture("error_409_webhook_active"))
    assert (await asyncio.wait_for(waiting, 5), await get_updates(client, bot)) == (
        conflict,
        conflict,
    )


async def test_revoking_ends_a_waiting_poll_with_401(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A poll waiting when its token is revoked answers 401."""
    waiting = asyncio.create_task(get_updates(client, bot, timeout=30))
    await asyncio.sleep(0.05)
    emulator.revoke(bot.id)
    assert await asyncio.wait_for(waiting, 5) == (401, load_fixture("error_401_unauthorized"))


async def test_closing_the_emulator_answers_waiting_polls(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Closing the emulator answers a waiting poll at once with what there is: []."""
    waiting = asyncio.create_task(get_updates(client, bot, timeout=30))
    await asyncio.sleep(0.05)
    await emulator.aclose()
    assert await asyncio.wait_for(waiting, 5) == (200, [])


async def test_allowed_updates_filter_new_updates(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """allowed_updates from getUpdates decides which later updates are created at all."""
    member = load_fixture("update_my_chat_member_added_to_group")
    del member["update_id"]
    await get_updates(client, bot, allowed_updates=["my_chat_member"])
    dropped = emulator.send_message(bot.id, ALICE, None, "not wanted")
    kept = emulator.inject_update(bot.id, member)
    await get_updates(client, bot, allowed_updates=[])
    chat_member = emulator.inject_update(bot.id, {"chat_member": member["my_chat_member"]})
    _, result = await get_updates(client, bot)
    assert ("update_id" in dropped, "update_id" in chat_member, result) == (False, False, [kept])


async def test_injected_updates_keep_or_get_ids(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A raw update keeps its update_id, even a repeated one; later ones are numbered after it."""
    base = emulator.send_message(bot.id, ALICE, None, "hi")["update_id"]
    callback = {**load_fixture("update_callback_query"), "update_id": base + 10}
    first = emulator.inject_update(bot.id, callback)
    twin = emulator.inject_update(bot.id, callback)
    fresh = emulator.inject_update(bot.id, {"poll": {"id": "p1"}})
    _, result = await get_updates(client, bot)
    assert (ids(result), first, twin, fresh) == (
        [base, base + 10, base + 10, base + 11],
        callback,
        callback,
        {"update_id": base + 11, "poll": {"id": "p1"}},
    )


async def test_a_callback_chat_becomes_writable(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """After a raw update from a chat the bot may send messages there."""
    emulator.inject_update(bot.id, load_fixture("update_callback_query"))
    response = await client.post(
        f"/bot{bot.token}/sendMessage", json={"chat_id": -1003456789012, "text": "Closed"}
    )
    assert (response.status_code, response.json()["result"]["chat"]) == (
        200,
        {"id": -1003456789012, "title": "Support Desk", "type": "supergroup", "is_forum": True},
    )


async def test_injected_nulls_are_dropped(emulator: Emulator, bot: BotRecord) -> None:
    """An injected update loses its null fields, as Telegram never sends them."""
    queued = emulator.inject_update(
        bot.id, {"update_id": None, "poll": {"id": "p1", "question": None, "is_closed": False}}
    )
    assert queued == {"update_id": queued["update_id"], "poll": {"id": "p1", "is_closed": False}}
