"""The Bot API surface over HTTP: shapes, errors and parameter encodings as Telegram has them."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import ALICE, BOB, OPS_GROUP, load_fixture


async def call(
    client: httpx.AsyncClient, token: str, method: str, **params: Any
) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/bot{token}/{method}", json=params)
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_get_me_has_telegrams_shape(client: httpx.AsyncClient, bot: BotRecord) -> None:
    """getMe answers with exactly the fields of Telegram's answer, for this bot."""
    status, body = await call(client, bot.token, "getMe")
    expected = load_fixture("response_getMe")
    expected["result"].update(id=bot.id, username="relay_alerts_bot", first_name="Relay")
    assert (status, body) == (200, expected)


async def test_method_names_ignore_case_and_get_works(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """Method names match case-insensitively, and GET works like POST."""
    response = await client.get(f"/bot{bot.token}/GETME")
    assert (response.status_code, response.json()["result"]["id"]) == (200, bot.id)


@pytest.mark.parametrize(
    ("path", "fixture"),
    [
        ("/botnot-a-token/getMe", "error_404_malformed_token"),
        ("/bot123456:AAAbbbCCC/getMe", "error_401_unauthorized"),
        ("/bot{token}/noSuchMethod", "error_404_malformed_token"),
        ("/somewhere/else", "error_404_malformed_token"),
    ],
    ids=["malformed-token", "unknown-token", "unknown-method", "unknown-path"],
)
async def test_token_and_method_errors(
    client: httpx.AsyncClient, bot: BotRecord, path: str, fixture: str
) -> None:
    """Malformed tokens and unknown methods are 404, unknown tokens 401, exactly as Telegram."""
    response = await client.post(path.format(token=bot.token))
    expected = load_fixture(fixture)
    assert (response.status_code, response.json()) == (expected["error_code"], expected)


async def test_revoked_and_rotated_tokens_are_unauthorized(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """After rotation the old token is 401 and the new one works; after revocation none does."""
    new_token = emulator.rotate_token(bot.id)
    old = await call(client, bot.token, "getMe")
    new = await call(client, new_token, "getMe")
    emulator.revoke(bot.id)
    revoked = await call(client, new_token, "getWebhookInfo")
    unauthorized = load_fixture("error_401_unauthorized")
    assert (old, new[0], revoked) == ((401, unauthorized), 200, (401, unauthorized))


async def test_send_message_returns_the_full_message(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """sendMessage answers a Message from the bot, numbered after the user's, dated by the clock."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    keyboard = {"inline_keyboard": [[{"text": "Close", "callback_data": "ticket:42:close"}]]}
    status, body = await call(
        client, bot.token, "sendMessage", chat_id=ALICE["id"], text="Hi!", reply_markup=keyboard
    )
    assert (status, body) == (
        200,
        {
            "ok": True,
            "result": {
                "message_id": 2,
                "from": {
                    "id": bot.id,
                    "is_bot": True,
                    "first_name": "Relay",
                    "username": "relay_alerts_bot",
                },
                "chat": {
                    "id": 5551234,
                    "first_name": "Alice",
                    "username": "alice",
                    "type": "private",
                },
                "date": emulator.clock.timestamp(),
                "text": "Hi!",
                "reply_markup": keyboard,
            },
        },
    )
    assert emulator.sent_messages(ALICE["id"]) == [body["result"]]


async def test_send_message_replies_and_skips_reply_keyboards(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A reply carries the replied message; a reply keyboard is not echoed back."""
    update = emulator.send_message(bot.id, BOB, OPS_GROUP, "/status")
    _, body = await call(
        client,
        bot.token,
        "sendMessage",
        chat_id=OPS_GROUP["id"],
        text="All green",
        reply_parameters={"message_id": 1},
        reply_markup={"keyboard": [[{"text": "ok"}]]},
    )
    result = body["result"]
    assert (result["message_id"], result["reply_to_message"], "reply_markup" in result) == (
        2,
        update["message"],
        False,
    )


async def test_send_message_echoes_link_preview_options(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """link_preview_options (or the old disable_web_page_preview) come back in the Message."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    url = "https://status.example/incident/42"
    answers = [
        await call(client, bot.token, "sendMessage", chat_id=ALICE["id"], text=url, **params)
        for params in (
            {"link_preview_options": {"is_disabled": True}},
            {
                "link_preview_options": {
                    "url": url,
                    "prefer_small_media": True,
                    "is_disabled": False,
                }
            },
            {"disable_web_page_preview": True},
            {"link_preview_options": {"is_disabled": False}},
        )
    ]
    assert [body["result"].get("link_preview_options") for _, body in answers] == [
        {"is_disabled": True},
        {"url": url, "prefer_small_media": True},
        {"is_disabled": True},
        None,
    ]
    assert emulator.sent_messages(ALICE["id"]) == [body["result"] for _, body in answers]


@pytest.mark.parametrize(
    ("params", "fixture"),
    [
        ({"chat_id": 777, "text": "hi"}, "error_400_chat_not_found"),
        ({"chat_id": "@nobody", "text": "hi"}, "error_400_chat_not_found"),
        ({"chat_id": ALICE["id"], "text": "x" * 4097}, "error_400_message_too_long"),
    ],
    ids=["unknown-chat", "unknown-username", "too-long"],
)
async def test_send_message_errors_match_telegram(
    client: httpx.AsyncClient,
    emulator: Emulator,
    bot: BotRecord,
    params: dict[str, Any],
    fixture: str,
) -> None:
    """Unknown chats and overlong texts are refused with Telegram's exact 400 bodies."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    assert await call(client, bot.token, "sendMessage", **params) == (400, load_fixture(fixture))


async def test_bot_only_writes_where_it_was_written_to(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A chat known to another bot is still "chat not found" for this one."""
    other = emulator.create_bot("other_bot")
    emulator.send_message(other.id, ALICE, None, "Hi other")
    status, body = await call(client, bot.token, "sendMessage", chat_id=ALICE["id"], text="x")
    assert (status, body) == (400, load_fixture("error_400_chat_not_found"))


async def test_message_ids_grow_per_chat(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Each chat numbers its messages on its own; a public group is reachable by @username."""
    group = {"id": -1002345678901, "title": "Ops", "type": "supergroup", "username": "ops_hq"}
    emulator.send_message(bot.id, ALICE, None, "Hello")
    emulator.send_message(bot.id, BOB, group, "Hi all")
    ids = []
    for chat_id in (ALICE["id"], "@ops_hq", ALICE["id"], group["id"]):
        _, body = await call(client, bot.token, "sendMessage", chat_id=chat_id, text="n")
        ids.append((body["result"]["chat"]["id"], body["result"]["message_id"]))
    assert ids == [(5551234, 2), (-1002345678901, 2), (5551234, 3), (-1002345678901, 3)]


async def test_parameters_arrive_in_every_encoding(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Query string, form, multipart and JSON bodies carry the same parameters."""
    emulator.send_message(bot.id, ALICE, None, "Hello")
    url = f"/bot{bot.token}/sendMessage"
    markup = {"inline_keyboard": [[{"text": "Ok", "callback_data": "ok"}]]}
    fields = {"chat_id": str(ALICE["id"]), "text": "Über <b>bold</b>", "parse_mode": "HTML"}
    encoded = {**fields, "reply_markup": json.dumps(markup)}
    responses = [
        await client.get(url, params=encoded),
        await client.post(url, data=encoded),
        await client.post(url, data=encoded, files={"unused": ("a.txt", b"file")}),
        await client.post(url, json={**fields, "chat_id": ALICE["id"], "reply_markup": markup}),
    ]
    shapes = {
        (r.status_code, r.json()["result"]["text"], str(r.json()["result"]["entities"]))
        for r in responses
    }
    markups = [r.json()["result"]["reply_markup"] for r in responses]
    assert (shapes, markups) == (
        {(200, "Über bold", "[{'offset': 5, 'length': 4, 'type': 'bold'}]")},
        [markup] * 4,
    )


async def test_get_webhook_info_while_polling_matches_telegram(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """Without a webhook getWebhookInfo has exactly the polling fields."""
    assert await call(client, bot.token, "getWebhookInfo") == (
        200,
        load_fixture("response_getWebhookInfo_polling"),
    )


async def test_set_webhook_then_info_has_telegrams_keys(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """setWebhook answers true with a description; getWebhookInfo then shows its settings."""
    url = "http://127.0.0.1:9/telegram/hook"
    first = await call(
        client,
        bot.token,
        "setWebhook",
        url=url,
        secret_token="s3cr3t_-X",
        max_connections=7,
        allowed_updates=["message", "callback_query"],
    )
    again = await call(
        client, bot.token, "setWebhook", url=url, secret_token="s3cr3t_-X", max_connections=7
    )
    _, info = await call(client, bot.token, "getWebhookInfo")
    failing_shape = load_fixture("response_getWebhookInfo_failing")["result"]
    expected_keys = [k for k in failing_shape if not k.startswith("last_error")]
    assert (first, again, list(info["result"]), info["result"]) == (
        (200, {"ok": True, "result": True, "description": "Webhook was set"}),
        (200, {"ok": True, "result": True, "description": "Webhook is already set"}),
        expected_keys,
        {
            "url": url,
            "has_custom_certificate": False,
            "pending_update_count": 0,
            "ip_address": "127.0.0.1",
            "max_connections": 7,
            "allowed_updates": ["message", "callback_query"],
        },
    )


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"secret_token": "no spaces"}, "Bad Request: secret token contains unallowed characters"),
        ({"secret_token": "ä"}, "Bad Request: secret token contains unallowed characters"),
        ({"secret_token": "abc\n"}, "Bad Request: secret token contains unallowed characters"),
        ({"secret_token": "x" * 257}, "Bad Request: secret token must be at most 256 bytes long"),
        (
            {"url": "ftp://x.example/"},
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        ),
    ],
    ids=["space", "non-ascii", "newline", "too-long", "scheme"],
)
async def test_set_webhook_refusals(
    client: httpx.AsyncClient, bot: BotRecord, params: dict[str, Any], description: str
) -> None:
    """Bad secrets and URLs are refused with Telegram's 400 descriptions."""
    status, body = await call(
        client, bot.token, "setWebhook", **{"url": "https://x.example/hook", **params}
    )
    assert (status, body) == (400, {"ok": False, "error_code": 400, "description": description})


async def test_max_connections_is_clamped(client: httpx.AsyncClient, bot: BotRecord) -> None:
    """max_connections outside 1–100 is clamped, as Telegram does; 40 by default."""
    seen = []
    for value in (None, 0, 500):
        params = {} if value is None else {"max_connections": value}
        await call(client, bot.token, "setWebhook", url=f"https://x.example/{value}", **params)
        _, info = await call(client, bot.token, "getWebhookInfo")
        seen.append(info["result"]["max_connections"])
    assert seen == [40, 1, 100]


async def test_delete_webhook_answers_like_telegram(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """deleteWebhook says whether there was one; an empty setWebhook url deletes too."""
    await call(client, bot.token, "setWebhook", url="https://x.example/hook")
    answers = [
        await call(client, bot.token, "deleteWebhook"),
        await call(client, bot.token, "deleteWebhook"),
        await call(client, bot.token, "setWebhook", url=""),
    ]
    assert answers == [
        (200, {"ok": True, "result": True, "description": "Webhook was deleted"}),
        (200, {"ok": True, "result": True, "description": "Webhook is already deleted"}),
        (200, {"ok": True, "result": True, "description": "Webhook is already deleted"}),
    ]
