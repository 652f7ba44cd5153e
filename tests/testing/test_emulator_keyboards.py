"""Inline keyboards on sendMessage: callback and URL buttons checked as Telegram checks them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import ALICE


async def send(client: httpx.AsyncClient, bot: BotRecord, buttons: list[Any]) -> tuple[int, Any]:
    response = await client.post(
        f"/bot{bot.token}/sendMessage",
        json={
            "chat_id": ALICE["id"],
            "text": "Pick",
            "reply_markup": {"inline_keyboard": [buttons]},
        },
    )
    body = response.json()
    return response.status_code, body.get("result", {}).get("reply_markup") or body["description"]


async def test_callback_and_url_buttons_come_back_with_the_message(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Callback data up to 64 bytes and http(s)/tg URLs are accepted and echoed."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    buttons = [
        {"text": "Close", "callback_data": "é" * 32},  # 64 bytes in UTF-8
        {"text": "Open", "url": "https://desk.example/tickets/42"},
        {"text": "Chat", "url": "tg://user?id=5551234"},
    ]
    assert await send(client, bot, buttons) == (200, {"inline_keyboard": [buttons]})


@pytest.mark.parametrize(
    ("button", "description"),
    [
        ({"text": "x", "callback_data": "é" * 32 + "a"}, "Bad Request: BUTTON_DATA_INVALID"),
        ({"text": "x", "callback_data": ""}, "Bad Request: BUTTON_DATA_INVALID"),
        (
            {"text": "x", "url": "desk.example/42"},
            "Bad Request: inline keyboard button URL is invalid",
        ),
        (
            {"text": "x"},
            "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the "
            "inline keyboard",
        ),
        (
            {"callback_data": "a"},
            'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String',
        ),
    ],
    ids=["data-65-bytes", "data-empty", "url-without-scheme", "text-only", "no-text"],
)
async def test_bad_buttons_are_refused(
    client: httpx.AsyncClient,
    emulator: Emulator,
    bot: BotRecord,
    button: dict[str, Any],
    description: str,
) -> None:
    """Each malformed button gets Telegram's 400 and nothing is sent."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    assert (await send(client, bot, [button]), emulator.sent_messages(ALICE["id"])) == (
        (400, description),
        [],
    )
