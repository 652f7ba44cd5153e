"""copyMessage: content copied without a link to the original, refusals as Telegram's."""

from __future__ import annotations

from typing import Any

import httpx

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import ALICE, BOB, NOW, SUPPORT_DESK_ID, bad_request, call


def forum_with_topic(emulator: Emulator, bot: BotRecord) -> dict[str, Any]:
    """The Support Desk forum (bot an admin, message 1) with topic 2 open."""
    forum = emulator.create_chat(
        "supergroup", "Support Desk", is_forum=True, chat_id=SUPPORT_DESK_ID
    )
    emulator.add_bot(forum["id"], bot.id, ALICE, status="administrator")
    emulator.create_forum_topic(bot.id, forum["id"], "#42 Billing")
    return forum


async def test_copy_a_customers_text_into_a_topic(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """The copy answers a MessageId and lands in the topic with the text and entities."""
    forum = forum_with_topic(emulator, bot)
    original = emulator.send_message(bot.id, ALICE, None, "/start my card was declined")
    answer = await call(
        client,
        bot,
        "copyMessage",
        chat_id=forum["id"],
        from_chat_id=ALICE["id"],
        message_id=original["message"]["message_id"],
        message_thread_id=2,
    )
    [copy] = emulator.sent_messages(forum["id"])
    assert answer == (200, {"ok": True, "result": {"message_id": 3}})
    assert {k: v for k, v in copy.items() if k != "reply_to_message"} == {
        "message_id": 3,
        "message_thread_id": 2,
        "from": bot.user_json(),
        "chat": forum,
        "date": NOW,
        "is_topic_message": True,
        "text": "/start my card was declined",
        "entities": [{"offset": 0, "length": 6, "type": "bot_command"}],
    }


async def test_copy_media_keeps_or_replaces_the_caption(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A media copy keeps the file and caption, or takes the caption the call gives."""
    forum = forum_with_topic(emulator, bot)
    sent = emulator.send_media(bot.id, ALICE, None, "document", caption="the receipt")
    message_id = sent["message"]["message_id"]
    for params in ({}, {"caption": "<i>From Alice</i>", "parse_mode": "HTML"}):
        await call(
            client,
            bot,
            "copyMessage",
            chat_id=forum["id"],
            from_chat_id=ALICE["id"],
            message_id=message_id,
            **params,
        )
    kept, replaced = emulator.sent_messages(forum["id"])
    document = sent["message"]["document"]
    assert [(m["document"], m["caption"], m.get("caption_entities")) for m in (kept, replaced)] == [
        (document, "the receipt", None),
        (document, "From Alice", [{"offset": 0, "length": 10, "type": "italic"}]),
    ]


async def test_copy_refusals(client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord) -> None:
    """A missing message is not found; a service message (the topic's opening) can't be copied."""
    forum = forum_with_topic(emulator, bot)
    emulator.send_message(bot.id, BOB, None, "hi")
    answers = [
        await call(
            client, bot, "copyMessage", chat_id=BOB["id"], from_chat_id=forum["id"], message_id=99
        ),
        await call(
            client, bot, "copyMessage", chat_id=BOB["id"], from_chat_id=forum["id"], message_id=2
        ),
    ]
    assert answers == [
        bad_request("message to copy not found"),
        bad_request("message can't be copied"),
    ]
