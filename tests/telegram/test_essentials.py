"""The essentials processing reads of every update, checked without aiogram: each fixture's
chat and sender as aiogram would give them, and malformed essentials counted like aiogram."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tgrelay.inbox import processing
from tgrelay.queue.retry import PermanentFailure
from tgrelay.telegram import aiogram_loading, essentials
from tgrelay.telegram.updates import UpdateKind, classify

FIXTURES = Path(__file__).parents[1] / "fixtures" / "telegram"
UPDATES = sorted(FIXTURES.glob("update_*.json"))


def _raw(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return loaded


@pytest.fixture(scope="module")
def aiogram_loaded() -> None:
    aiogram_loading.import_aiogram()  # what serve does at start-up (telegram.client.load)


@pytest.mark.parametrize("path", UPDATES, ids=lambda p: p.stem)
async def test_chat_and_sender_are_aiograms_for_every_fixture(
    path: Path, aiogram_loaded: None
) -> None:
    """For each real update shape, the essentials agree with aiogram's typed view."""
    from aiogram.types import Update

    raw = orjson.loads(path.read_bytes())
    kind = classify(raw)
    chat, sender = essentials.chat_and_sender(raw, kind)
    typed: Any = getattr(Update.model_validate(raw), kind.value)
    typed_chat = getattr(typed, "chat", None)
    if typed_chat is None and kind is UpdateKind.CALLBACK_QUERY and typed.message is not None:
        typed_chat = typed.message.chat
    typed_sender = getattr(typed, "from_user", None) or getattr(typed, "user", None)
    assert (None if chat is None else (chat.id, chat.type, chat.title, chat.username)) == (
        None
        if typed_chat is None
        else (typed_chat.id, typed_chat.type, typed_chat.title, typed_chat.username)
    )
    assert (None if sender is None else (sender.id, sender.first_name, sender.username)) == (
        None
        if typed_sender is None
        else (typed_sender.id, typed_sender.first_name, typed_sender.username)
    )


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"message": {"text": "no chat, no date"}}, 3),  # message_id, date, chat
        ({"message": {"message_id": 1, "date": 1, "chat": {"id": "x", "type": "private"}}}, 1),
        ({"callback_query": {"id": "7", "from": {"id": 1}}}, 2),  # is_bot, first_name
        ({"my_chat_member": {"chat": {"type": "group"}}}, 1),  # the chat's id
    ],
)
def test_malformed_essentials_are_counted(body: dict[str, Any], errors: int) -> None:
    raw = {"update_id": 1, **body}
    with pytest.raises(essentials.Malformed) as caught:
        essentials.chat_and_sender(raw, classify(raw))
    assert caught.value.errors == errors


def test_an_update_of_a_kind_newer_than_this_code_has_no_essentials() -> None:
    raw = {"update_id": 1, "purchased_paid_media": {"from": "anything"}}
    assert essentials.chat_and_sender(raw, classify(raw)) == (None, None)


async def test_aiogram_parses_only_when_asked_and_its_failure_is_permanent(
    aiogram_loaded: None,
) -> None:
    """Essentials fine, a field only aiogram reads malformed: the update is interpreted (its
    chat and sender recorded, its event sent as Telegram sent it); a domain asking for the
    typed view gets a PermanentFailure with aiogram's count, as an unparseable update did."""
    raw = _raw("update_private_text.json")
    raw["message"]["entities"] = "not a list"
    processed = processing.interpret(
        1, orjson.dumps(raw).decode(), row_id=1, received_at=datetime(2026, 6, 1, tzinfo=UTC)
    )
    assert processed.chat is not None
    assert processed.sender is not None
    assert "update" not in vars(processed)  # not parsed yet
    with pytest.raises(PermanentFailure, match=r"^not a valid Telegram Update: 1 errors$"):
        _ = processed.update
