"""Webhook pushes to a real receiver on loopback: headers, order, concurrency, retries."""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import httpx

from tgrelay.testing.emulator import BotRecord, Emulator
from tgrelay.testing.receiver import Delivery, receiving

from .conftest import ALICE, BOB, FAST_RETRY, OPS_GROUP, load_fixture


def user(n: int) -> dict[str, Any]:
    return {"id": 6_000_000 + n, "first_name": f"User {n}"}


def chat_and_text(delivery: Delivery) -> tuple[int, str]:
    message = delivery.json()["message"]
    return message["chat"]["id"], message["text"]


async def test_push_carries_the_update_and_the_secret(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Each update is POSTed as JSON with the secret in X-Telegram-Bot-Api-Secret-Token."""
    async with receiving() as running:
        response = await client.post(
            f"/bot{bot.token}/setWebhook", data={"url": running.url, "secret_token": "s3cret"}
        )
        update = emulator.send_message(bot.id, ALICE, None, "Hello")
        [delivery] = await running.receiver.wait_for(1)
        await emulator.wait_until_delivered(bot.id)
    assert (response.status_code, delivery.method, delivery.path, delivery.json()) == (
        200,
        "POST",
        "/hook",
        update,
    )
    assert (
        delivery.headers["x-telegram-bot-api-secret-token"],
        delivery.headers["content-type"],
        emulator.webhook_info(bot.id)["pending_update_count"],
    ) == ("s3cret", "application/json", 0)


async def test_no_secret_no_header(emulator: Emulator, bot: BotRecord) -> None:
    """Without a secret the push has no secret header."""
    async with receiving() as running:
        emulator.set_webhook(bot.id, running.url)
        emulator.send_message(bot.id, ALICE, None, "Hello")
        [delivery] = await running.receiver.wait_for(1)
    assert "x-telegram-bot-api-secret-token" not in delivery.headers


async def test_per_chat_order_with_chats_in_parallel(emulator: Emulator, bot: BotRecord) -> None:
    """A slow receiver still gets each chat's updates in order, one at a time per chat,
    while other chats proceed meanwhile."""
    rng = random.Random(3)
    other_chat_arrived = asyncio.Event()
    open_per_chat: dict[int, int] = {}
    peak_per_chat: dict[int, int] = {}

    async def respond(delivery: Delivery) -> int:
        chat_id, text = chat_and_text(delivery)
        open_per_chat[chat_id] = open_per_chat.get(chat_id, 0) + 1
        peak_per_chat[chat_id] = max(peak_per_chat.get(chat_id, 0), open_per_chat[chat_id])
        if chat_id == BOB["id"]:
            other_chat_arrived.set()
        if text == "a0":
            # Held until Bob's chat gets a request in: chats must not wait for each other.
            await asyncio.wait_for(other_chat_arrived.wait(), 5)
        await asyncio.sleep(rng.uniform(0, 0.01))
        open_per_chat[chat_id] -= 1
        return 200

    async with receiving(respond) as running:
        emulator.set_webhook(bot.id, running.url)
        for n in range(5):
            emulator.send_message(bot.id, ALICE, None, f"a{n}")
        for n in range(5):
            emulator.send_message(bot.id, BOB, None, f"b{n}")
        deliveries = await running.receiver.wait_for(10)
    received = [chat_and_text(d) for d in deliveries]
    assert (
        [t for c, t in received if c == ALICE["id"]],
        [t for c, t in received if c == BOB["id"]],
        peak_per_chat,
        received[0],
    ) == (
        ["a0", "a1", "a2", "a3", "a4"],
        ["b0", "b1", "b2", "b3", "b4"],
        {ALICE["id"]: 1, BOB["id"]: 1},
        (ALICE["id"], "a0"),
    )


async def test_max_connections_bounds_requests_in_flight(
    emulator: Emulator, bot: BotRecord
) -> None:
    """With max_connections=3 never more than three pushes are open at once."""
    batch = asyncio.Event()
    gathered = 0

    async def respond(delivery: Delivery) -> int:
        nonlocal batch, gathered
        mine = batch
        gathered += 1
        if gathered == 3:  # three open at once: let this batch finish
            gathered = 0
            batch = asyncio.Event()
            mine.set()
        await asyncio.wait_for(mine.wait(), 5)
        return 200

    async with receiving(respond) as running:
        emulator.set_webhook(bot.id, running.url, max_connections=3)
        sent = [emulator.send_message(bot.id, user(n), None, f"m{n}") for n in range(9)]
        deliveries = await running.receiver.wait_for(9)
        await emulator.wait_until_delivered(bot.id)
    assert (running.receiver.peak_in_flight, sorted(d.json()["update_id"] for d in deliveries)) == (
        3,
        [u["update_id"] for u in sent],
    )


async def test_failing_webhook_is_retried_and_reported(emulator: Emulator, bot: BotRecord) -> None:
    """500s are retried with the same update; getWebhookInfo shows the error meanwhile."""
    failing = True

    async def respond(delivery: Delivery) -> int:
        return 500 if failing else 200

    async with receiving(respond) as running:
        emulator.set_webhook(bot.id, running.url, allowed_updates=["message", "edited_message"])
        update = emulator.send_message(bot.id, ALICE, None, "Hello")
        await running.receiver.wait_for(3)
        while_failing = emulator.webhook_info(bot.id)
        failing = False
        await emulator.wait_until_delivered(bot.id)
        attempts = len(running.receiver.deliveries)
    bodies = {d.body for d in running.receiver.deliveries}
    failing_shape = load_fixture("response_getWebhookInfo_failing")["result"]
    assert (list(while_failing), while_failing, attempts >= 4, len(bodies)) == (
        list(failing_shape),
        {
            "url": running.url,
            "has_custom_certificate": False,
            "pending_update_count": 1,
            "ip_address": "127.0.0.1",
            "last_error_date": emulator.clock.timestamp(),
            "last_error_message": "Wrong response from the webhook: 500 Internal Server Error",
            "max_connections": 40,
            "allowed_updates": ["message", "edited_message"],
        },
        True,
        1,
    )
    assert running.receiver.deliveries[0].json() == update


async def test_slow_webhook_times_out_and_is_retried(bot: BotRecord) -> None:
    """A receiver slower than the push timeout reads as "Read timeout expired", then retried."""
    released = asyncio.Event()

    async def respond(delivery: Delivery) -> int:
        await released.wait()
        return 200

    async with (
        Emulator(retry=FAST_RETRY, webhook_timeout=0.2) as emulator,
        receiving(respond) as running,
    ):
        record = emulator.create_bot(bot.username)
        emulator.set_webhook(record.id, running.url)
        emulator.send_message(record.id, ALICE, None, "Hello")
        await running.receiver.wait_for(2)
        error = emulator.webhook_info(record.id).get("last_error_message")
        released.set()
        await emulator.wait_until_delivered(record.id)
    assert error == "Read timeout expired"


async def test_unreachable_webhook_keeps_updates_for_polling(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A refused connection shows in getWebhookInfo; deleteWebhook hands updates to getUpdates."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    emulator.set_webhook(bot.id, f"http://127.0.0.1:{port}/hook")
    update = emulator.send_message(bot.id, BOB, OPS_GROUP, "/status")
    while "last_error_message" not in emulator.webhook_info(bot.id):
        await asyncio.sleep(0.01)
    error = emulator.webhook_info(bot.id)["last_error_message"]
    await client.post(f"/bot{bot.token}/deleteWebhook")
    polled = (await client.post(f"/bot{bot.token}/getUpdates")).json()
    assert (error, polled) == ("Connection refused", {"ok": True, "result": [update]})


async def test_drop_pending_updates_forgets_them(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """deleteWebhook with drop_pending_updates leaves nothing to poll."""
    emulator.set_webhook(bot.id, "http://127.0.0.1:9/hook")
    emulator.send_message(bot.id, ALICE, None, "Hello")
    await client.post(f"/bot{bot.token}/deleteWebhook", data={"drop_pending_updates": "true"})
    polled = (await client.post(f"/bot{bot.token}/getUpdates")).json()
    assert (polled, emulator.webhook_info(bot.id)) == (
        {"ok": True, "result": []},
        load_fixture("response_getWebhookInfo_polling")["result"],
    )


async def test_foreign_webhook_takes_the_updates(emulator: Emulator, bot: BotRecord) -> None:
    """When another service sets the webhook, pending and new updates go to its URL."""

    async def refuse(delivery: Delivery) -> int:
        return 503

    async with receiving(refuse) as ours, receiving() as theirs:
        emulator.set_webhook(bot.id, ours.url, secret_token="ours")
        first = emulator.send_message(bot.id, ALICE, None, "one")
        await ours.receiver.wait_for(1)
        config = emulator.set_webhook_as_foreign(bot.id, theirs.url)
        second = emulator.send_message(bot.id, ALICE, None, "two")
        deliveries = await theirs.receiver.wait_for(2)
    assert (config.url, config.secret_token, [d.json() for d in deliveries]) == (
        theirs.url,
        None,
        [first, second],
    )


async def test_media_edits_and_button_presses_are_pushed_in_order(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A user's photo, their edit and their button press reach the webhook in that order."""
    keyboard = {"inline_keyboard": [[{"text": "Close", "callback_data": "ticket:42:close"}]]}
    async with receiving() as running:
        emulator.set_webhook(bot.id, running.url)
        photo = emulator.send_media(bot.id, ALICE, None, "photo", caption="receipt")
        await client.post(
            f"/bot{bot.token}/sendMessage",
            json={"chat_id": ALICE["id"], "text": "Thanks", "reply_markup": keyboard},
        )
        edited = emulator.edit_message(bot.id, ALICE, ALICE["id"], 1, "the receipt")
        pressed = emulator.press_button(bot.id, ALICE, ALICE["id"], 2, "ticket:42:close")
        deliveries = await running.receiver.wait_for(3)
        await emulator.wait_until_delivered(bot.id)
    assert [delivery.json() for delivery in deliveries] == [photo, edited, pressed]
