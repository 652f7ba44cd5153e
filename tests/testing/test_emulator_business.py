"""Telegram Business: connections, customers' chats with the account, sending as the account."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiogram.types import Message, Update

from tgrelay.testing.emulator import BotRecord, Emulator, errors

from .conftest import ALICE, BOB, NOW, bad_request, call

# The company's own account, a Telegram Business user who connects the bot.
SHOP: dict[str, Any] = {"id": 5550001, "is_bot": False, "first_name": "Acme Shop"}


def parsed(update: dict[str, Any]) -> Update:
    """The update as aiogram reads it (raises if Telegram's shape is off)."""
    return Update.model_validate(update)


def test_connecting_a_bot_sends_business_connection(emulator: Emulator, bot: BotRecord) -> None:
    """Connecting sends a BusinessConnection with the account, rights and is_enabled."""
    update = emulator.connect_business(bot.id, SHOP)
    connection = update["business_connection"]
    assert emulator.pending_updates(bot.id) == [update]
    assert connection == {
        "id": connection["id"],
        "user": SHOP,
        "user_chat_id": SHOP["id"],
        "date": NOW,
        "can_reply": True,
        "is_enabled": True,
        "rights": {"can_reply": True, "can_read_messages": True},
    }
    read = parsed(update).business_connection
    assert read is not None
    assert read.rights is not None
    assert read.rights.can_reply is True


def test_customers_messages_edits_and_deletions(emulator: Emulator, bot: BotRecord) -> None:
    """A customer's message, edit and deletion reach the bot with the connection's id."""
    connection_id = emulator.connect_business(bot.id, SHOP)["business_connection"]["id"]
    sent = emulator.business_message(connection_id, ALICE, "where is my order?")
    edited = emulator.edit_business_message(connection_id, ALICE["id"], 1, "where is order 7?")
    deleted = emulator.delete_business_messages(connection_id, ALICE["id"], [1])
    chat = {"id": ALICE["id"], "first_name": "Alice", "username": "alice", "type": "private"}
    assert sent["business_message"] == {
        "message_id": 1,
        "from": ALICE,
        "chat": chat,
        "date": NOW,
        "business_connection_id": connection_id,
        "text": "where is my order?",
    }
    assert edited["edited_business_message"] == {
        **sent["business_message"],
        "text": "where is order 7?",
        "edit_date": NOW,
    }
    assert deleted["deleted_business_messages"] == {
        "business_connection_id": connection_id,
        "chat": chat,
        "message_ids": [1],
    }
    for update in (sent, edited, deleted):
        assert parsed(update).event_type in {
            "business_message",
            "edited_business_message",
            "deleted_business_messages",
        }
    assert emulator.business_messages(connection_id, ALICE["id"]) == []


async def test_send_message_as_the_account(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """sendMessage with business_connection_id posts as the account, signed by the bot."""
    connection_id = emulator.connect_business(bot.id, SHOP)["business_connection"]["id"]
    emulator.business_message(connection_id, ALICE, "hello?")
    status, body = await call(
        client,
        bot,
        "sendMessage",
        chat_id=ALICE["id"],
        text="Hi Alice",
        business_connection_id=connection_id,
    )
    assert status == 200
    assert body["result"] == {
        "message_id": 2,
        "from": SHOP,
        "chat": {"id": ALICE["id"], "first_name": "Alice", "username": "alice", "type": "private"},
        "date": NOW,
        "business_connection_id": connection_id,
        "text": "Hi Alice",
        "sender_business_bot": bot.user_json(),
    }
    assert Message.model_validate(body["result"]).sender_business_bot is not None
    assert [m["text"] for m in emulator.business_messages(connection_id, ALICE["id"])] == [
        "hello?",
        "Hi Alice",
    ]
    assert emulator.sent_messages(ALICE["id"]) == []


async def test_send_a_file_as_the_account(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """sendDocument by file_id with business_connection_id lands in the account's chat."""
    connection_id = emulator.connect_business(bot.id, SHOP)["business_connection"]["id"]
    got = emulator.business_message(connection_id, ALICE, media_kind="document", caption="bill")
    file_id = got["business_message"]["document"]["file_id"]
    status, body = await call(
        client,
        bot,
        "sendDocument",
        chat_id=ALICE["id"],
        document=file_id,
        caption="your receipt",
        business_connection_id=connection_id,
    )
    assert status == 200
    assert (body["result"]["from"], body["result"]["caption"]) == (SHOP, "your receipt")
    assert body["result"]["document"] == got["business_message"]["document"]


async def test_refusals_as_telegrams(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Unknown, paused, reply-less and removed connections, and unknown chats, are refused."""
    connection_id = emulator.connect_business(bot.id, SHOP)["business_connection"]["id"]
    emulator.business_message(connection_id, ALICE, "hello?")

    async def send(chat_id: int = ALICE["id"], via: str = connection_id) -> Any:
        return await call(
            client, bot, "sendMessage", chat_id=chat_id, text="hi", business_connection_id=via
        )

    assert await send(via="nope") == bad_request("BUSINESS_CONNECTION_INVALID")
    assert await send(chat_id=BOB["id"]) == bad_request("chat not found")
    paused = emulator.change_business_connection(connection_id, is_enabled=False)
    assert paused["business_connection"]["is_enabled"] is False
    assert await send() == bad_request("BUSINESS_CONNECTION_NOT_ALLOWED")
    mute = emulator.change_business_connection(
        connection_id, is_enabled=True, rights={"can_read_messages": True}
    )
    assert mute["business_connection"]["can_reply"] is False
    assert "can_reply" not in mute["business_connection"]["rights"]
    assert await send() == bad_request("BUSINESS_CONNECTION_NOT_ALLOWED")
    removed = emulator.change_business_connection(connection_id, removed=True)
    assert removed["business_connection"]["is_enabled"] is False
    assert await send() == bad_request("BUSINESS_CONNECTION_INVALID")
    assert parsed(removed).business_connection is not None


async def test_control_routes(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """The control surface connects, relays a customer, edits, deletes, pauses and removes."""
    base = "/_emulator/business/connections"
    made = await client.post(base, json={"bot_id": bot.id, "user": SHOP})
    connection_id = made.json()["business_connection"]["id"]
    wrote = await client.post(f"{base}/{connection_id}/messages", json={"from": BOB, "text": "hi"})
    chat = f"{base}/{connection_id}/chats/{BOB['id']}"
    edit = await client.post(f"{chat}/messages/1/edit", json={"text": "hello"})
    listed = await client.get(f"{chat}/messages")
    delete = await client.post(f"{chat}/delete", json={"message_ids": [1]})
    paused = await client.patch(f"{base}/{connection_id}", json={"is_enabled": False})
    removed = await client.delete(f"{base}/{connection_id}")
    again = await client.delete(f"{base}/{connection_id}")
    assert [r.status_code for r in (made, wrote, edit, listed, delete, paused, removed)] == [
        201,
        200,
        200,
        200,
        200,
        200,
        200,
    ]
    assert wrote.json()["business_message"]["text"] == "hi"
    assert [m["text"] for m in listed.json()] == ["hello"]
    assert delete.json()["deleted_business_messages"]["message_ids"] == [1]
    assert paused.json()["business_connection"]["is_enabled"] is False
    assert (again.status_code, again.json()) == (
        400,
        {"error": f"business connection {connection_id!r} was removed"},
    )
    kinds = [next(k for k in u if k != "update_id") for u in emulator.pending_updates(bot.id)]
    assert kinds == [
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "business_connection",
        "business_connection",
    ]


def test_the_accounts_own_message_reaches_the_bot(emulator: Emulator, bot: BotRecord) -> None:
    """What the account's owner writes in a customer's chat comes as a business_message from
    the account, numbered in that chat; a chat nobody opened is refused."""
    connection_id = emulator.connect_business(bot.id, SHOP)["business_connection"]["id"]
    emulator.business_message(connection_id, ALICE, "hello?")
    update = emulator.business_account_message(connection_id, ALICE["id"], "hi Alice!")
    message = update["business_message"]
    assert message == {
        "message_id": 2,
        "from": SHOP,
        "chat": message["chat"],
        "date": NOW,
        "business_connection_id": connection_id,
        "text": "hi Alice!",
    }
    assert message["chat"]["id"] == ALICE["id"]
    assert parsed(update).business_message is not None
    with pytest.raises(errors.InvalidPayload, match="no business chat"):
        emulator.business_account_message(connection_id, BOB["id"], "hi Bob")
