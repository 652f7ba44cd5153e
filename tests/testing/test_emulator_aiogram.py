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
    TelegramUnauthorizedError,
)
from aiogram.types import MessageEntity

from tgrelay.testing.emulator_server import RunningEmulator

from .conftest import ALICE


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
