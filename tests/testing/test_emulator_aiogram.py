"""aiogram, the client tgrelay uses, against the emulator on a real loopback port."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    MessageId,
)

from tgrelay.testing.emulator import Limit
from tgrelay.testing.emulator_server import RunningEmulator

from .conftest import ALICE, BOB


def dump(entities: list[MessageEntity] | None) -> list[dict[str, Any]]:
    return [entity.model_dump(exclude_none=True) for entity in entities or []]


def aiogram_bot(running: RunningEmulator, token: str) -> Bot:
    return Bot(token, session=AiohttpSession(api=running.api_server))


async def test_aiogram_parses_every_answer(running: RunningEmulator) -> None:
    """getMe, getUpdates, sendMessage and the webhook methods all parse into aiogram's types."""
    emulator = running.emulator
    record = emulator.create_bot("relay_alerts_bot", first_name="Relay")
    update = emulator.send_message(record.id, ALICE, None, "/start AbC")
    async with aiogram_bot(running, record.token) as bot:
        me = await bot.get_me()
        polled = await bot.get_updates(offset=0, timeout=0)
        sent = await bot.send_message(ALICE["id"], "<b>Hi</b> Alice", parse_mode="HTML")
        was_set = await bot.set_webhook(
            "http://127.0.0.1:9/hook",
            secret_token="s3cret",
            max_connections=5,
            allowed_updates=["message", "my_chat_member"],
            drop_pending_updates=True,
        )
        info = await bot.get_webhook_info()
        was_deleted = await bot.delete_webhook()
        info_after = await bot.get_webhook_info()
    assert (me.id, me.username, me.is_bot, me.can_join_groups) == (
        record.id,
        "relay_alerts_bot",
        True,
        True,
    )
    [received] = polled
    assert received.message is not None
    assert (received.update_id, received.message.text, dump(received.message.entities)) == (
        update["update_id"],
        "/start AbC",
        [{"type": "bot_command", "offset": 0, "length": 6}],
    )
    assert sent.from_user is not None
    assert (sent.message_id, sent.chat.id, sent.from_user.id, sent.text, dump(sent.entities)) == (
        2,
        ALICE["id"],
        record.id,
        "Hi Alice",
        [{"type": "bold", "offset": 0, "length": 2}],
    )
    assert (was_set, info.url, info.max_connections, info.allowed_updates) == (
        True,
        "http://127.0.0.1:9/hook",
        5,
        ["message", "my_chat_member"],
    )
    assert (was_deleted, info_after.url, info_after.pending_update_count) == (True, "", 0)


async def test_aiogram_long_poll_gets_the_next_update(running: RunningEmulator) -> None:
    """aiogram's long poll returns the update a user sends while it waits."""
    emulator = running.emulator
    record = emulator.create_bot("relay_alerts_bot")
    async with aiogram_bot(running, record.token) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=20))
        await asyncio.sleep(0.05)
        update = emulator.send_message(record.id, ALICE, None, "ping")
        [received] = await asyncio.wait_for(poll, 5)
    assert received.update_id == update["update_id"]


async def test_aiogram_raises_telegrams_errors(running: RunningEmulator) -> None:
    """Bad chats, polling under a webhook and revoked tokens raise aiogram's matching errors."""
    emulator = running.emulator
    record = emulator.create_bot("relay_alerts_bot")
    async with aiogram_bot(running, record.token) as bot:
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.send_message(777, "hello?")
        emulator.set_webhook_as_foreign(record.id, "http://127.0.0.1:9/other")
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        emulator.revoke(record.id)
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await bot.get_me()


async def test_aiogram_parses_group_life(running: RunningEmulator) -> None:
    """Joining a forum, opening a topic, talking in it, migrating and kicks all parse in aiogram."""
    emulator = running.emulator
    record = emulator.create_bot("relay_alerts_bot", first_name="Relay")
    forum = emulator.create_chat("supergroup", "Support Desk", is_forum=True)
    group = emulator.create_chat("group", "Ops Alerts")
    emulator.add_bot(forum["id"], record.id, ALICE, status="administrator")
    emulator.add_bot(group["id"], record.id, ALICE)
    async with aiogram_bot(running, record.token) as bot:
        topic = await bot.create_forum_topic(forum["id"], "#42 Billing", icon_color=7322096)
        sent = await bot.send_message(
            forum["id"], "Ticket opened", message_thread_id=topic.message_thread_id
        )
        emulator.send_message(
            record.id, BOB, {"id": forum["id"]}, "on it", message_thread_id=topic.message_thread_id
        )
        new_id = emulator.migrate_chat(group["id"], by=ALICE)
        emulator.remove_bot(new_id, record.id, by=BOB)
        polled = await bot.get_updates(offset=0, timeout=0)
    changes = [update.my_chat_member for update in polled if update.my_chat_member]
    messages = [update.message for update in polled if update.message]
    joined, _, topic_message, moved_out, moved_in, left = messages
    opening = topic_message.reply_to_message
    assert opening is not None
    assert [type(change.new_chat_member) for change in changes] == [
        ChatMemberAdministrator,
        ChatMemberMember,
        ChatMemberBanned,
    ]
    assert (
        [member.id for member in joined.new_chat_members or []],
        (topic.message_thread_id, topic.name, topic.icon_color),
        (sent.message_thread_id, sent.is_topic_message),
        (
            topic_message.message_thread_id,
            opening.model_dump(exclude_none=True)["forum_topic_created"],
        ),
        (moved_out.migrate_to_chat_id, moved_in.migrate_from_chat_id),
        left.left_chat_member.id if left.left_chat_member else None,
    ) == (
        [record.id],
        (2, "#42 Billing", 7322096),
        (2, True),
        (2, {"name": "#42 Billing", "icon_color": 7322096}),
        (new_id, group["id"]),
        record.id,
    )


async def test_aiogram_raises_group_and_flood_errors(running: RunningEmulator) -> None:
    """Upgraded groups, kicks, blocks and flood limits raise aiogram's errors with their details."""
    emulator = running.emulator
    record = emulator.create_bot("relay_alerts_bot")
    group = emulator.create_chat("group", "Ops Alerts")
    supergroup = emulator.create_chat("supergroup", "Ops")
    emulator.add_bot(group["id"], record.id, ALICE)
    emulator.add_bot(supergroup["id"], record.id, ALICE)
    emulator.send_message(record.id, ALICE, None, "/start")
    new_id = emulator.migrate_chat(group["id"])
    emulator.remove_bot(supergroup["id"], record.id, by=ALICE)
    emulator.block_bot(ALICE["id"], record.id)
    async with aiogram_bot(running, record.token) as bot:
        with pytest.raises(TelegramMigrateToChat) as migrated:
            await bot.send_message(group["id"], "hi")
        with pytest.raises(TelegramForbiddenError, match="kicked from the supergroup chat"):
            await bot.send_message(supergroup["id"], "hi")
        with pytest.raises(TelegramForbiddenError, match="blocked by the user"):
            await bot.send_message(ALICE["id"], "hi")
        with pytest.raises(TelegramBadRequest, match="the chat is not a forum"):
            await bot.create_forum_topic(new_id, "x")
        emulator.set_flood_control()
        await bot.send_message(new_id, "first")
        with pytest.raises(TelegramRetryAfter) as flooded:
            await bot.send_message(new_id, "second")
    assert (migrated.value.migrate_to_chat_id, flooded.value.retry_after) == (new_id, 1)


async def test_aiogram_parses_the_outbox_methods(running: RunningEmulator) -> None:
    """Media by file_id, copies, edits, topic management and callback answers parse in aiogram,
    and so do the callback_query and edited_message updates users cause."""
    emulator = running.emulator
    record = emulator.create_bot("relay_alerts_bot", first_name="Relay")
    forum = emulator.create_chat("supergroup", "Support Desk", is_forum=True)
    emulator.add_bot(forum["id"], record.id, ALICE, status="administrator")
    files = {
        kind: emulator.send_media(record.id, ALICE, None, kind)["message"]
        for kind in ("photo", "document", "video", "voice", "sticker")
    }
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Close", callback_data="ticket:42:close")]]
    )
    async with aiogram_bot(running, record.token) as bot:
        topic = await bot.create_forum_topic(forum["id"], "#42 Billing")
        thread = topic.message_thread_id
        media = [
            await bot.send_photo(
                forum["id"],
                files["photo"]["photo"][-1]["file_id"],
                caption="<b>Receipt</b>",
                parse_mode="HTML",
                message_thread_id=thread,
                reply_markup=keyboard,
            ),
            await bot.send_document(forum["id"], files["document"]["document"]["file_id"]),
            await bot.send_video(forum["id"], files["video"]["video"]["file_id"]),
            await bot.send_voice(forum["id"], files["voice"]["voice"]["file_id"]),
            await bot.send_sticker(forum["id"], files["sticker"]["sticker"]["file_id"]),
        ]
        copied = await bot.copy_message(
            forum["id"], ALICE["id"], files["document"]["message_id"], message_thread_id=thread
        )
        header = await bot.send_message(
            forum["id"], "Ticket #42 is open", message_thread_id=thread, reply_markup=keyboard
        )
        edited = await bot.edit_message_text(
            "Ticket #42 is closed", chat_id=forum["id"], message_id=header.message_id
        )
        pressed = emulator.press_button(
            record.id, BOB, forum["id"], media[0].message_id, "ticket:42:close"
        )
        emptied = await bot.edit_message_reply_markup(
            chat_id=forum["id"], message_id=media[0].message_id
        )
        topic_changes = [
            await bot.edit_forum_topic(forum["id"], thread, name="#42 Done"),
            await bot.close_forum_topic(forum["id"], thread),
            await bot.reopen_forum_topic(forum["id"], thread),
        ]
        with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
            await bot.send_photo(forum["id"], "AgACAgIAAxkBAAIBogus")
        looking = emulator.send_message(
            record.id, BOB, {"id": forum["id"]}, "looking", message_thread_id=thread
        )
        emulator.edit_message(
            record.id, BOB, forum["id"], looking["message"]["message_id"], "on it"
        )
        with pytest.raises(TelegramBadRequest, match="message is not modified"):
            await bot.edit_message_reply_markup(chat_id=forum["id"], message_id=media[0].message_id)
        answered = await bot.answer_callback_query(
            pressed["callback_query"]["id"], text="Closed", show_alert=True
        )
        polled = await bot.get_updates(offset=0, timeout=0)
        emulator.set_topic_limit(Limit(count=1, window=60))
        await bot.create_forum_topic(forum["id"], "#43")
        with pytest.raises(TelegramRetryAfter) as limited:
            await bot.create_forum_topic(forum["id"], "#44")
    assert limited.value.retry_after == 60
    photo, document, video, voice, sticker = media
    assert (
        [size.file_id for size in photo.photo or []],
        photo.caption,
        photo.message_thread_id,
        document.document.file_id if document.document else None,
        video.video.duration if video.video else None,
        voice.voice.mime_type if voice.voice else None,
        sticker.sticker.emoji if sticker.sticker else None,
    ) == (
        [size["file_id"] for size in files["photo"]["photo"]],
        "Receipt",
        thread,
        files["document"]["document"]["file_id"],
        12,
        "audio/ogg",
        "\N{THUMBS UP SIGN}",
    )
    assert isinstance(edited, Message)
    assert isinstance(emptied, Message)
    assert isinstance(copied, MessageId)
    assert copied.message_id == header.message_id - 1
    assert (edited.text, edited.reply_markup, emptied.reply_markup, topic_changes, answered) == (
        "Ticket #42 is closed",
        None,
        None,
        [True, True, True],
        True,
    )
    queries = [update.callback_query for update in polled if update.callback_query]
    edits = [update.edited_message for update in polled if update.edited_message]
    assert [
        (q.data, q.from_user.id, q.message.message_id if q.message else None) for q in queries
    ] == [("ticket:42:close", BOB["id"], photo.message_id)]
    assert [(e.text, e.message_thread_id, e.edit_date is not None) for e in edits] == [
        ("on it", thread, True)
    ]
