"""Outbox sends with business_connection_id go out as the Telegram Business account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tgrelay import errors
from tgrelay.observability import Metrics
from tgrelay.telegram.client import TelegramClients
from tgrelay.telegram.outbox import calls, messages
from tgrelay.telegram.outbox.outcomes import Sent
from tgrelay.testing.emulator_server import RunningEmulator

ALICE: dict[str, Any] = {"id": 5551234, "is_bot": False, "first_name": "Alice"}
SHOP: dict[str, Any] = {"id": 5550001, "is_bot": False, "first_name": "Acme Shop"}


@pytest.fixture
async def clients(emulator: RunningEmulator) -> AsyncIterator[TelegramClients]:
    pool = TelegramClients(emulator.base_url, Metrics())
    yield pool
    await pool.aclose()


async def test_text_and_file_go_out_as_the_account(
    emulator: RunningEmulator, clients: TelegramClients
) -> None:
    """SendText and SendFile carrying business_connection_id post in the account's chat."""
    telegram = emulator.emulator
    bot = telegram.create_bot("desk_bot")
    connection_id = telegram.connect_business(bot.id, SHOP)["business_connection"]["id"]
    got = telegram.business_message(connection_id, ALICE, media_kind="photo")
    photo = got["business_message"]["photo"][-1]["file_id"]
    client = clients.for_token(bot.token)
    text = messages.SendText(
        bot_id=bot.id, chat_id=ALICE["id"], text="Hi", business_connection_id=connection_id
    )
    file = messages.SendFile(
        bot_id=bot.id,
        chat_id=ALICE["id"],
        method="sendPhoto",
        file_id=photo,
        business_connection_id=connection_id,
    )
    assert messages.load(messages.dump(text)) == text
    assert await calls.perform(client, text) == Sent(method="sendMessage", message_id=2)
    assert await calls.perform(client, file) == Sent(method="sendPhoto", message_id=3)
    chat = telegram.business_messages(connection_id, ALICE["id"])
    assert [(m["from"]["id"], m.get("text")) for m in chat] == [
        (ALICE["id"], None),
        (SHOP["id"], "Hi"),
        (SHOP["id"], None),
    ]
    assert chat[2]["photo"][-1]["file_id"] == photo
    assert telegram.sent_messages(ALICE["id"]) == []


async def test_a_paused_connection_is_a_bad_request(
    emulator: RunningEmulator, clients: TelegramClients
) -> None:
    """Telegram's refusal of a paused connection reaches the outbox as TelegramBadRequest."""
    telegram = emulator.emulator
    bot = telegram.create_bot("desk_bot")
    connection_id = telegram.connect_business(bot.id, SHOP)["business_connection"]["id"]
    telegram.business_message(connection_id, ALICE, "hello?")
    telegram.change_business_connection(connection_id, is_enabled=False)
    request = messages.SendText(
        bot_id=bot.id, chat_id=ALICE["id"], text="Hi", business_connection_id=connection_id
    )
    with pytest.raises(errors.TelegramBadRequest, match="BUSINESS_CONNECTION_NOT_ALLOWED"):
        await calls.perform(clients.for_token(bot.token), request)
