"""The control surface: BotFather, users and time, driven over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from tgrelay.testing.emulator import Emulator
from tgrelay.testing.emulator_server import RunningEmulator

from .conftest import ALICE, BOB, OPS_GROUP, load_fixture


async def create_bot(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/_emulator/bots", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_create_bot_then_read_it(client: httpx.AsyncClient) -> None:
    """A new bot gets a 10-digit id and a `id:secret` token; asking again returns the same."""
    created = await create_bot(client, username="relay_alerts_bot", first_name="Relay")
    again = await client.post("/_emulator/bots", json={"username": "relay_alerts_bot"})
    shown = await client.get(f"/_emulator/bots/{created['id']}")
    bot_id, secret = created["token"].split(":")
    assert (len(str(created["id"])), bot_id, len(secret)) == (10, str(created["id"]), 35)
    assert (again.status_code, again.json(), shown.json()) == (
        200,
        created,
        {
            "id": created["id"],
            "token": created["token"],
            "username": "relay_alerts_bot",
            "first_name": "Relay",
            "revoked": False,
            "webhook": None,
        },
    )


async def test_unknown_bot_and_bad_bodies(client: httpx.AsyncClient) -> None:
    """Unknown bots are 404 and unusable bodies 400, both as JSON."""
    answers = [
        await client.get("/_emulator/bots/1234567890"),
        await client.post("/_emulator/bots", json={"username": "has space"}),
        await client.post("/_emulator/updates", json={"bot_id": 1, "text": "no sender"}),
        await client.post("/_emulator/clock/advance", json={"seconds": -5}),
    ]
    assert [(r.status_code, list(r.json())) for r in answers] == [
        (404, ["error"]),
        (400, ["error"]),
        (400, ["error"]),
        (400, ["error"]),
    ]
    assert answers[0].json() == {"error": "bot 1234567890 not found"}


async def test_revoke_and_rotate(client: httpx.AsyncClient) -> None:
    """Revoking kills the token; rotating issues a new one that works and the old stays dead."""
    created = await create_bot(client, username="relay_alerts_bot")
    revoked = await client.post(f"/_emulator/bots/{created['id']}/revoke")
    dead = await client.get(f"/bot{created['token']}/getMe")
    rotated = await client.post(f"/_emulator/bots/{created['id']}/rotate")
    new_token = rotated.json()["token"]
    old = await client.get(f"/bot{created['token']}/getMe")
    new = await client.get(f"/bot{new_token}/getMe")
    unauthorized = load_fixture("error_401_unauthorized")
    assert (revoked.json()["revoked"], dead.json(), old.json(), new.status_code) == (
        True,
        unauthorized,
        unauthorized,
        200,
    )
    assert (new_token.split(":")[0], new_token != created["token"]) == (str(created["id"]), True)


async def test_foreign_webhook_shows_on_the_bot(client: httpx.AsyncClient) -> None:
    """A webhook set from outside shows on the bot and in getWebhookInfo; DELETE removes it."""
    created = await create_bot(client, username="relay_alerts_bot")
    url = "https://other.example/hook"
    shown = await client.post(
        f"/_emulator/bots/{created['id']}/webhook",
        json={"url": url, "secret_token": "theirs", "allowed_updates": ["message"]},
    )
    info = await client.get(f"/bot{created['token']}/getWebhookInfo")
    removed = await client.delete(f"/_emulator/bots/{created['id']}/webhook")
    assert (shown.json()["webhook"], info.json()["result"]["url"], removed.json()["webhook"]) == (
        {
            "url": url,
            "secret_token": "theirs",
            "max_connections": 40,
            "allowed_updates": ["message"],
        },
        url,
        None,
    )


async def test_user_messages_and_raw_updates(client: httpx.AsyncClient, emulator: Emulator) -> None:
    """Users' messages and raw updates go in through the control surface and out by getUpdates."""
    created = await create_bot(client, username="relay_alerts_bot")
    text = await client.post(
        "/_emulator/updates",
        json={
            "bot_id": created["id"],
            "from": BOB,
            "chat": OPS_GROUP,
            "text": "/status@relay_alerts_bot",
        },
    )
    member = load_fixture("update_my_chat_member_added_to_group")
    raw = await client.post("/_emulator/updates", json={"bot_id": created["id"], "update": member})
    pending = await client.get(f"/_emulator/bots/{created['id']}/updates")
    polled = await client.get(f"/bot{created['token']}/getUpdates")
    message = text.json()["message"]
    assert (message["chat"], message["from"], message["entities"]) == (
        OPS_GROUP,
        {**BOB, "is_bot": False},
        [{"offset": 0, "length": 24, "type": "bot_command"}],
    )
    assert (raw.json(), pending.json(), polled.json()["result"]) == (
        member,
        [text.json(), member],
        [text.json(), member],
    )


async def test_chat_messages_lists_what_bots_sent(client: httpx.AsyncClient) -> None:
    """The chat's messages are the bots' sendMessage results in order, filterable by bot."""
    first = await create_bot(client, username="first_bot")
    second = await create_bot(client, username="second_bot")
    sent = []
    for bot in (first, second, first):
        await client.post(
            "/_emulator/updates", json={"bot_id": bot["id"], "from": ALICE, "text": "hi"}
        )
        response = await client.post(
            f"/bot{bot['token']}/sendMessage", json={"chat_id": ALICE["id"], "text": "hello"}
        )
        sent.append(response.json()["result"])
    everything = await client.get(f"/_emulator/chats/{ALICE['id']}/messages")
    only_first = await client.get(
        f"/_emulator/chats/{ALICE['id']}/messages", params={"bot_id": first["id"]}
    )
    nothing = await client.get(f"/_emulator/chats/{OPS_GROUP['id']}/messages")
    assert (everything.json(), only_first.json(), nothing.json()) == (
        sent,
        [sent[0], sent[2]],
        [],
    )


async def test_advancing_the_clock_dates_later_messages(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """Moving the clock a day forward dates the next update a day later."""
    created = await create_bot(client, username="relay_alerts_bot")
    before = (await client.get("/_emulator/clock")).json()
    advanced = await client.post("/_emulator/clock/advance", json={"seconds": 86400})
    update = emulator.send_message(created["id"], ALICE, None, "tomorrow")
    assert (advanced.json(), update["message"]["date"]) == (
        {"now": "2025-11-22T04:48:20+00:00", "timestamp": before["timestamp"] + 86400},
        before["timestamp"] + 86400,
    )


async def test_control_surface_over_a_real_port(running: RunningEmulator) -> None:
    """The served emulator answers both surfaces on its base URL."""
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        created = (await client.post("/_emulator/bots", json={"username": "relay_bot"})).json()
        me = await client.get(f"/bot{created['token']}/getMe")
    assert (running.base_url, me.json()["result"]["id"]) == (
        f"http://127.0.0.1:{running.port}",
        created["id"],
    )


async def test_users_send_media_reply_edit_and_press_over_http(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """The control surface lets users send media into a topic, reply, edit and press buttons."""
    created = await create_bot(client, username="relay_alerts_bot")
    bot_id = created["id"]
    forum = (
        await client.post(
            "/_emulator/chats", json={"type": "supergroup", "title": "Desk", "is_forum": True}
        )
    ).json()
    await client.post(
        f"/_emulator/chats/{forum['id']}/members",
        json={"bot_id": bot_id, "by": ALICE, "status": "administrator"},
    )  # message 1
    topic = (
        await client.post(
            f"/bot{created['token']}/createForumTopic", json={"chat_id": forum["id"], "name": "#42"}
        )
    ).json()["result"]  # message 2
    where = {"bot_id": bot_id, "from": BOB, "chat": {"id": forum["id"]}, "message_thread_id": 2}
    posted = await client.post(
        "/_emulator/updates",
        json={**where, "media": {"type": "document", "file_name": "log.txt"}, "caption": "logs"},
    )  # message 3
    keyboard = {"inline_keyboard": [[{"text": "Close", "callback_data": "close"}]]}
    await client.post(
        f"/bot{created['token']}/sendMessage",
        json={
            "chat_id": forum["id"],
            "text": "Open",
            "message_thread_id": 2,
            "reply_markup": keyboard,
        },
    )  # message 4
    reply = await client.post(
        "/_emulator/updates", json={**where, "text": "see above", "reply_to_message_id": 4}
    )  # message 5
    edit = await client.post(
        f"/_emulator/chats/{forum['id']}/messages/5/edit",
        json={"bot_id": bot_id, "from": BOB, "text": "see the log"},
    )
    press = await client.post(
        f"/_emulator/chats/{forum['id']}/messages/4/press",
        json={"bot_id": bot_id, "from": BOB, "data": "close"},
    )
    query_id = press.json()["callback_query"]["id"]
    await client.post(
        f"/bot{created['token']}/answerCallbackQuery",
        json={"callback_query_id": query_id, "text": "Closed"},
    )
    answer = await client.get(f"/_emulator/callbacks/{query_id}")
    shown = await client.get(f"/_emulator/chats/{forum['id']}/messages/5")
    document = posted.json()["message"]["document"]
    assert (
        topic["message_thread_id"],
        document["file_name"],
        posted.json()["message"]["caption"],
    ) == (
        2,
        "log.txt",
        "logs",
    )
    assert (
        reply.json()["message"]["reply_to_message"]["message_id"],
        edit.json()["edited_message"]["text"],
        shown.json()["text"],
        press.json()["callback_query"]["data"],
        answer.json(),
    ) == (
        4,
        "see the log",
        "see the log",
        "close",
        {"answer": {"text": "Closed", "show_alert": False, "url": None, "cache_time": 0}},
    )


async def test_new_control_routes_refuse_bad_input(client: httpx.AsyncClient) -> None:
    """Bad media, pressing unknown buttons and unknown queries answer JSON problems."""
    created = await create_bot(client, username="relay_alerts_bot")
    await client.post(
        "/_emulator/updates", json={"bot_id": created["id"], "from": ALICE, "text": "hi"}
    )
    answers = [
        await client.post(
            "/_emulator/updates",
            json={"bot_id": created["id"], "from": ALICE, "media": {"type": "gif"}},
        ),
        await client.post(
            "/_emulator/updates",
            json={"bot_id": created["id"], "from": ALICE, "media": {"type": "photo", "colour": 1}},
        ),
        await client.post(
            f"/_emulator/chats/{ALICE['id']}/messages/1/press",
            json={"bot_id": created["id"], "from": ALICE, "data": "x"},
        ),
        await client.get("/_emulator/callbacks/42"),
        await client.put("/_emulator/topic-limit", json={"per_chat": [0, 60]}),
    ]
    assert [(r.status_code, list(r.json())) for r in answers] == [(400, ["error"])] * 5
    assert answers[1].json() == {"error": "a photo has no colour"}
