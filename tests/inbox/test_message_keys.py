"""The duplicate check's message keys: one per message as Telegram numbers them, so a copy
under a new update_id is found and two different messages never share a key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tgrelay.inbox.models import ProcessedUpdate
from tgrelay.inbox.screening import message_key
from tgrelay.telegram.updates import UpdateKind

CUSTOMER = {"id": 7001, "is_bot": False, "first_name": "Ada"}
CHAT = {"id": 7001, "type": "private", "first_name": "Ada"}


def _processed(kind: UpdateKind, body: dict[str, Any]) -> ProcessedUpdate:
    return ProcessedUpdate(
        row_id=1,
        bot_id=42,
        update_id=100,
        received_at=datetime(2026, 1, 5, tzinfo=UTC),
        kind=kind,
        raw={"update_id": 100, kind.value: body},
        chat=None,
        sender=None,
    )


def _message(message_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "date": 1,
        "chat": CHAT,
        "from": CUSTOMER,
        "text": "hi",
    } | extra


@pytest.mark.parametrize(
    ("kind", "body", "key"),
    [
        (UpdateKind.MESSAGE, _message(5), "7001:5:0"),
        (UpdateKind.EDITED_MESSAGE, _message(5, edit_date=9), "7001:5:9"),
        (
            UpdateKind.BUSINESS_MESSAGE,
            _message(5, business_connection_id="conn-A"),
            "bd520d673aa77:7001:5:0",
        ),
        (UpdateKind.CALLBACK_QUERY, {"id": "1", "from": CUSTOMER, "data": "x"}, None),
    ],
)
def test_each_message_has_its_key(kind: UpdateKind, body: dict[str, Any], key: str | None) -> None:
    """A message's key is chat:message:edit; a business chat's message also names its
    connection (hashed); an update carrying no message has none."""
    assert message_key(_processed(kind, body)) == key


def test_a_business_chat_and_the_private_chat_of_the_same_user_never_share_a_key() -> None:
    """Message 5 of Ada's business chat with the account, message 5 of her private chat with
    the bot, and message 5 under another connection are three messages, three keys."""
    keys = {
        message_key(_processed(UpdateKind.MESSAGE, _message(5))),
        message_key(
            _processed(UpdateKind.BUSINESS_MESSAGE, _message(5, business_connection_id="conn-A"))
        ),
        message_key(
            _processed(UpdateKind.BUSINESS_MESSAGE, _message(5, business_connection_id="conn-B"))
        ),
    }
    assert len(keys) == 3
    assert all(key is not None and len(key) <= 64 for key in keys)
