"""Callback queries: users pressing inline buttons, bots answering within the time allowed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import BotRecord, Emulator, errors

from .conftest import ALICE, BOB, FIXTURE_BOT_ID, NOW, SUPPORT_DESK_ID, call, load_fixture, swap

CLOSE = {"inline_keyboard": [[{"text": "Close", "callback_data": "ticket:42:close"}]]}
TOO_OLD = {
    "ok": False,
    "error_code": 400,
    "description": "Bad Request: query is too old and response timeout expired or query ID is "
    "invalid",
}


async def ticket_message(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> dict[str, Any]:
    """Support Desk (bot admin, message 1), topic 2, and the bot's message 3 with a button."""
    forum = emulator.create_chat(
        "supergroup", "Support Desk", is_forum=True, chat_id=SUPPORT_DESK_ID
    )
    emulator.add_bot(forum["id"], bot.id, ALICE, status="administrator")
    emulator.create_forum_topic(bot.id, forum["id"], "#42 Billing")
    _, body = await call(
        client,
        bot,
        "sendMessage",
        chat_id=forum["id"],
        text="Ticket #42 is open",
        message_thread_id=2,
        reply_markup=CLOSE,
    )
    message: dict[str, Any] = body["result"]
    return message


async def test_pressing_a_button_sends_a_callback_query(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """The bot gets a callback_query shaped as Telegram's, with the message as it now is."""
    message = await ticket_message(client, emulator, bot)
    update = emulator.press_button(bot.id, BOB, SUPPORT_DESK_ID, 3, "ticket:42:close")
    query = update["callback_query"]
    expected = swap(
        load_fixture("update_callback_query"),
        {FIXTURE_BOT_ID: bot.id, 100000009: update["update_id"], 58: 3, 55: 2, 1763700410: NOW},
    )
    expected["callback_query"]["id"] = query["id"]
    expected["callback_query"]["chat_instance"] = query["chat_instance"]
    assert update == expected
    assert (
        query["id"].isdigit(),
        int(query["chat_instance"]) != 0,
        emulator.pending_updates(bot.id)[-1],
        {k: v for k, v in message.items() if k != "reply_to_message"},
    ) == (True, True, expected, query["message"])


async def test_answers_are_recorded_once_and_expire_with_the_clock(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """An answer within 15 s is kept; a second answer, a late one or an unknown id is 400."""
    await ticket_message(client, emulator, bot)
    first = emulator.press_button(bot.id, BOB, SUPPORT_DESK_ID, 3, "ticket:42:close")
    late = emulator.press_button(bot.id, BOB, SUPPORT_DESK_ID, 3, "ticket:42:close")
    first_id, late_id = first["callback_query"]["id"], late["callback_query"]["id"]
    answered = await call(
        client, bot, "answerCallbackQuery", callback_query_id=first_id, text="Closed", cache_time=5
    )
    again = await call(client, bot, "answerCallbackQuery", callback_query_id=first_id)
    emulator.clock.advance(15)
    on_time_edge = emulator.callback_answer(late_id)
    emulator.clock.advance(1)
    too_late = await call(client, bot, "answerCallbackQuery", callback_query_id=late_id)
    unknown = await call(client, bot, "answerCallbackQuery", callback_query_id="123")
    assert (answered, again, too_late, unknown) == (
        (200, {"ok": True, "result": True}),
        (400, TOO_OLD),
        (400, TOO_OLD),
        (400, TOO_OLD),
    )
    assert (
        emulator.callback_answer(first_id),
        on_time_edge,
        emulator.callback_answer(late_id),
    ) == (
        {"text": "Closed", "show_alert": False, "url": None, "cache_time": 5},
        None,
        None,
    )


async def test_only_existing_buttons_can_be_pressed(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Pressing data the message has no button for, or a message without one, is refused."""
    await ticket_message(client, emulator, bot)
    with pytest.raises(errors.InvalidPayload, match="no button"):
        emulator.press_button(bot.id, BOB, SUPPORT_DESK_ID, 3, "ticket:42:reopen")
    with pytest.raises(errors.InvalidPayload, match="has no message 99"):
        emulator.press_button(bot.id, BOB, SUPPORT_DESK_ID, 99, "ticket:42:close")
