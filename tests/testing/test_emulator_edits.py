"""Edits: bots editing their messages' text and keyboards, users editing theirs."""

from __future__ import annotations

from typing import Any

import httpx

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import ALICE, FIXTURE_BOT_ID, NOW, call, load_fixture, swap

CLOSE = {"inline_keyboard": [[{"text": "Close", "callback_data": "ticket:42:close"}]]}
REOPEN = {"inline_keyboard": [[{"text": "Reopen", "callback_data": "ticket:42:reopen"}]]}
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)


def refused(description: str) -> tuple[int, dict[str, Any]]:
    return 400, {"ok": False, "error_code": 400, "description": description}


async def test_edited_text_and_keyboard_show_in_the_chat(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """editMessageText and editMessageReplyMarkup change the message the chat shows, dated."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    await call(
        client,
        bot,
        "sendMessage",
        chat_id=ALICE["id"],
        text="Ticket #42 is open",
        reply_markup=CLOSE,
    )
    emulator.clock.advance(60)
    text = await call(
        client,
        bot,
        "editMessageText",
        chat_id=ALICE["id"],
        message_id=2,
        text="Ticket #42 is <b>closed</b>",
        parse_mode="HTML",
        reply_markup=CLOSE,
    )
    markup = await call(
        client,
        bot,
        "editMessageReplyMarkup",
        chat_id=ALICE["id"],
        message_id=2,
        reply_markup=REOPEN,
    )
    expected = {
        "message_id": 2,
        "from": bot.user_json(),
        "chat": {"id": ALICE["id"], "first_name": "Alice", "username": "alice", "type": "private"},
        "date": NOW,
        "edit_date": NOW + 60,
        "text": "Ticket #42 is closed",
        "entities": [{"offset": 14, "length": 6, "type": "bold"}],
    }
    assert (text, markup) == (
        (200, {"ok": True, "result": {**expected, "reply_markup": CLOSE}}),
        (200, {"ok": True, "result": {**expected, "reply_markup": REOPEN}}),
    )
    assert (
        emulator.message(ALICE["id"], 2, bot_id=bot.id),
        emulator.sent_messages(ALICE["id"]),
    ) == ({**expected, "reply_markup": REOPEN}, [{**expected, "reply_markup": REOPEN}])


async def test_editing_text_without_a_keyboard_removes_it(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """As on Telegram, a text edit that leaves reply_markup out drops the inline keyboard."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    await call(client, bot, "sendMessage", chat_id=ALICE["id"], text="Open", reply_markup=CLOSE)
    await call(client, bot, "editMessageText", chat_id=ALICE["id"], message_id=2, text="Closed")
    assert emulator.message(ALICE["id"], 2, bot_id=bot.id) == {
        "message_id": 2,
        "from": bot.user_json(),
        "chat": {"id": ALICE["id"], "first_name": "Alice", "username": "alice", "type": "private"},
        "date": NOW,
        "edit_date": NOW,
        "text": "Closed",
    }


async def test_edit_refusals(client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord) -> None:
    """Unchanged edits, missing messages, others' messages and media text edits are refused."""
    emulator.send_message(bot.id, ALICE, None, "Hello")  # 1: Alice's
    await call(client, bot, "sendMessage", chat_id=ALICE["id"], text="Open", reply_markup=CLOSE)
    photo = emulator.send_media(bot.id, ALICE, None, "photo")["message"]["photo"][0]  # 3
    await call(client, bot, "sendPhoto", chat_id=ALICE["id"], photo=photo["file_id"])  # 4
    chat = ALICE["id"]
    answers = [
        await call(
            client,
            bot,
            "editMessageText",
            chat_id=chat,
            message_id=2,
            text="Open",
            reply_markup=CLOSE,
        ),
        await call(
            client, bot, "editMessageReplyMarkup", chat_id=chat, message_id=2, reply_markup=CLOSE
        ),
        await call(client, bot, "editMessageText", chat_id=chat, message_id=99, text="x"),
        await call(client, bot, "editMessageText", chat_id=chat, message_id=1, text="x"),
        await call(client, bot, "editMessageText", chat_id=chat, message_id=4, text="x"),
    ]
    assert answers == [
        refused(NOT_MODIFIED),
        refused(NOT_MODIFIED),
        refused("Bad Request: message to edit not found"),
        refused("Bad Request: message can't be edited"),
        refused("Bad Request: there is no text in the message to edit"),
    ]


def test_a_user_edit_sends_edited_message(emulator: Emulator, bot: BotRecord) -> None:
    """A user's edit reaches the bot as `edited_message` with edit_date, as Telegram shapes it."""
    sent = emulator.send_message(bot.id, ALICE, None, "Hello, my card was declinde")
    emulator.clock.advance(500)
    update = emulator.edit_message(
        bot.id, ALICE, ALICE["id"], sent["message"]["message_id"], "Hello, my card was declined"
    )
    expected = swap(
        load_fixture("update_edited_message"),
        {FIXTURE_BOT_ID: bot.id, 100000010: update["update_id"], 11: 1, 1763700000: NOW},
    )
    expected["edited_message"]["edit_date"] = NOW + 500
    assert (update, emulator.pending_updates(bot.id)[-1]) == (expected, expected)
    assert emulator.message(ALICE["id"], 1, bot_id=bot.id) == expected["edited_message"]
