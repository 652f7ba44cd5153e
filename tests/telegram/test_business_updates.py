"""Business updates are classified by kind, with the chat and sender aiogram sees."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram.types import Update

from tgrelay.telegram import essentials
from tgrelay.telegram.updates import ALLOWED_UPDATES, UpdateKind, chat_id_of, classify
from tgrelay.testing.emulator import Emulator

ALICE: dict[str, Any] = {"id": 5551234, "is_bot": False, "first_name": "Alice"}
SHOP: dict[str, Any] = {"id": 5550001, "is_bot": False, "first_name": "Acme Shop"}


def _business_updates() -> list[dict[str, Any]]:
    telegram = Emulator(seed=3)
    bot = telegram.create_bot("desk_bot")
    connected = telegram.connect_business(bot.id, SHOP)
    connection_id = connected["business_connection"]["id"]
    return [
        connected,
        telegram.business_message(connection_id, ALICE, "hello?"),
        telegram.edit_business_message(connection_id, ALICE["id"], 1, "hello!"),
        telegram.delete_business_messages(connection_id, ALICE["id"], [1]),
    ]


@pytest.mark.parametrize(
    ("index", "kind", "chat_id", "sender_id"),
    [
        (0, UpdateKind.BUSINESS_CONNECTION, None, SHOP["id"]),
        (1, UpdateKind.BUSINESS_MESSAGE, ALICE["id"], ALICE["id"]),
        (2, UpdateKind.EDITED_BUSINESS_MESSAGE, ALICE["id"], ALICE["id"]),
        (3, UpdateKind.DELETED_BUSINESS_MESSAGES, ALICE["id"], None),
    ],
)
def test_business_kinds_chats_and_senders(
    index: int, kind: UpdateKind, chat_id: int | None, sender_id: int | None
) -> None:
    """Each business update has its kind, its chat for ordering and its sender, as aiogram's."""
    raw = _business_updates()[index]
    chat, sender = essentials.chat_and_sender(raw, classify(raw))
    typed: Any = getattr(Update.model_validate(raw), kind.value)
    assert classify(raw) is kind
    assert kind.value in ALLOWED_UPDATES
    assert chat_id_of(raw, kind) == chat_id
    assert (None if chat is None else chat.id) == chat_id
    assert (None if sender is None else sender.id) == sender_id
    typed_sender = getattr(typed, "from_user", None) or getattr(typed, "user", None)
    assert (None if typed_sender is None else typed_sender.id) == sender_id
