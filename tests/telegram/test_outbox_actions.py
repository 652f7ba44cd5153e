"""The outbox's error table: each Telegram answer, as aiogram raises it and our client
translates it, leads to one action (real error bodies from tests/fixtures/telegram/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram import exceptions as aiogram_errors
from aiogram.methods import EditMessageText, SendMessage, TelegramMethod

from tgrelay import errors
from tgrelay.telegram.client import translate
from tgrelay.telegram.outbox.actions import Action, decide

FIXTURES = Path(__file__).parent.parent / "fixtures" / "telegram"


def answered(fixture: str, *, edit: bool = False) -> errors.TelegramError:
    """Our error for Telegram's answer in `fixture`, through aiogram's own response check."""
    body = json.loads((FIXTURES / fixture).read_text())
    bot = Bot("123456:" + "A" * 35)
    method: TelegramMethod[Any] = (
        EditMessageText(chat_id=-100, message_id=7, text="same")
        if edit
        else SendMessage(chat_id=-100, text="hi")
    )
    try:
        bot.session.check_response(bot, method, body["error_code"], json.dumps(body))
    except aiogram_errors.TelegramAPIError as exc:
        return translate(exc, method.__api_method__)
    raise AssertionError(f"{fixture} did not raise")


@pytest.mark.parametrize(
    ("fixture", "edit", "action", "says"),
    [
        ("error_429_flood.json", False, Action.WAIT, ""),
        ("error_400_group_upgraded.json", False, Action.MIGRATE, ""),
        ("error_403_kicked.json", False, Action.CHAT_GONE, ""),
        ("error_403_blocked.json", False, Action.CHAT_GONE, ""),
        ("error_400_chat_not_found.json", False, Action.FAIL, ""),
        ("error_400_message_too_long.json", False, Action.FAIL, ""),
        ("error_401_unauthorized.json", False, Action.FAIL, "the bot's token was refused: "),
        ("error_404_malformed_token.json", False, Action.FAIL, "the bot's token was refused: "),
        ("error_409_webhook_active.json", False, Action.FAIL, ""),
        ("error_500_internal.json", False, Action.RETRY, "Telegram unreachable: "),
        ("error_400_message_not_modified.json", True, Action.SUCCEED, ""),
    ],
)
def test_each_telegram_answer_has_its_action(
    fixture: str, edit: bool, action: Action, says: str
) -> None:
    """The table's action for a real error body; the reason keeps Telegram's description."""
    description = json.loads((FIXTURES / fixture).read_text())["description"]
    method = "editMessageText" if edit else "sendMessage"

    decision = decide(answered(fixture, edit=edit))

    assert decision.action is action
    assert decision.reason.startswith(f"{says}{method}: ")
    assert description in decision.reason


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (errors.TelegramUnavailable("sendMessage: ServerDisconnectedError"), Action.RETRY),
        (errors.TelegramCircuitOpen("sendMessage: circuit open", retry_after=30), Action.BREAKER),
        (errors.TelegramError("sendMessage: an answer aiogram cannot parse"), Action.FAIL),
    ],
)
def test_errors_without_an_answer_have_their_action(
    error: errors.TelegramError, action: Action
) -> None:
    """A network failure retries; a call the breaker held back waits for it; an answer we
    cannot read fails rather than risk a second message."""
    assert decide(error).action is action
