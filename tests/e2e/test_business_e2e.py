"""End to end through the emulator and the worker: a customer writes to the team's Telegram
Business account, the desk's ticket is answered as the account, and the account removing the
bot shows on the desk and fails the next reply with a clear reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tests.support.desks import ADA, BOB, GREETING
from tgrelay.db import tables
from tgrelay.support import ticket_store
from tgrelay.support.models import Ticket
from tgrelay.testing.emulator_server import RunningEmulator

from .desks import Desk, make_desk
from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

GENEROUS = (1000, 1.0)  # as in test_support_e2e: flows, not limits
STEP_SECONDS = 30.0  # a deadline under load, not a pace
SHOP: dict[str, Any] = {
    "id": 5550001,
    "is_bot": False,
    "first_name": "Acme Shop",
    "username": "acme_shop",
}


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        send_limit_per_group=GENEROUS,
        send_limit_per_chat=GENEROUS,
    )
    async with running_tgrelay(settings, port) as found:
        yield found


async def _api(relay: Tgrelay, path: str) -> Any:
    response = await relay.api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def _ticket(relay: Tgrelay, desk: Desk, connection_id: str) -> Ticket | None:
    async with relay.runtime.db.engine.connect() as conn:
        return await ticket_store.latest_of_customer(
            conn, desk.bot.id, ADA["id"], business_connection_id=connection_id
        )


async def _changes(relay: Tgrelay) -> list[dict[str, Any]]:
    async with relay.runtime.db.engine.connect() as conn:
        bodies = await conn.scalars(
            select(tables.events.c.body).where(
                tables.events.c.type == "desk.business_connection_changed"
            )
        )
        return [orjson.loads(body)["data"] for body in bodies]


def _chat(emulator: RunningEmulator, connection_id: str) -> list[tuple[int, str, str | None]]:
    """The account's chat with Ada: (sender, text, the bot that sent it as the account)."""
    return [
        (m["from"]["id"], m.get("text", ""), (m.get("sender_business_bot") or {}).get("username"))
        for m in emulator.emulator.business_messages(connection_id, ADA["id"])
    ]


async def test_a_business_chat_is_answered_as_the_account_until_the_account_removes_the_bot(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """The account connects the bot (announced); Ada's message to the account opens a ticket
    whose topic's reply reaches her from the account; removing the connection is announced
    and shown on the desk, and a later reply fails saying why, in the API and the topic,
    whose header warns."""
    desk = await make_desk(relay, emulator, name="Help", greeting_text=GREETING)
    telegram = emulator.emulator
    connected = telegram.connect_business(desk.bot.id, SHOP)
    connection_id = connected["business_connection"]["id"]

    async def announced(count: int) -> bool:
        return len(await _changes(relay)) >= count

    await eventually(lambda: announced(1), timeout=STEP_SECONDS)
    telegram.business_message(connection_id, ADA, "where is my parcel?")

    async def opened() -> bool:
        ticket = await _ticket(relay, desk, connection_id)
        if ticket is None or ticket.header_message_id is None:
            return False
        messages = await _api(relay, f"/v1/tickets/{ticket.id}/messages")
        greeted = (SHOP["id"], GREETING, "help_bot") in _chat(emulator, connection_id)
        return bool(messages[0]["relay_status"] == "sent") and greeted

    await eventually(opened, timeout=STEP_SECONDS)
    ticket = await _ticket(relay, desk, connection_id)
    assert ticket is not None
    [topic] = telegram.chat(desk.chat_id)["topics"]
    assert topic["name"] == "💼 #1 Ada Lovelace · where is my parcel?"
    view = await _api(relay, f"/v1/tickets/{ticket.id}")
    assert view["business_connection_id"] == connection_id

    telegram.send_message(
        desk.bot.id,
        BOB,
        {"id": desk.chat_id},
        "it ships today",
        message_thread_id=ticket.topic_thread_id,
    )

    async def answered() -> bool:
        return (SHOP["id"], "it ships today", "help_bot") in _chat(emulator, connection_id)

    await eventually(answered, timeout=STEP_SECONDS)
    assert _chat(emulator, connection_id) == [
        (ADA["id"], "where is my parcel?", None),
        (SHOP["id"], GREETING, "help_bot"),
        (SHOP["id"], "it ships today", "help_bot"),
    ]

    telegram.change_business_connection(connection_id, removed=True)
    await eventually(lambda: announced(2), timeout=STEP_SECONDS)
    desk_view = await _api(relay, f"/v1/support/desks/{desk.id}")
    [shown] = desk_view["business_connections"]
    assert {k: v for k, v in shown.items() if k != "updated_at"} == {
        "id": connection_id,
        "account": {
            "id": SHOP["id"],
            "first_name": "Acme Shop",
            "last_name": None,
            "username": "acme_shop",
        },
        "state": "disabled",
        "can_reply": True,
        "is_enabled": False,
    }

    telegram.send_message(
        desk.bot.id,
        BOB,
        {"id": desk.chat_id},
        "are you there?",
        message_thread_id=ticket.topic_thread_id,
    )

    async def failed() -> bool:
        messages = await _api(relay, f"/v1/tickets/{ticket.id}/messages")
        return bool(messages[-1]["relay_status"] == "failed")

    await eventually(failed, timeout=STEP_SECONDS)
    last = (await _api(relay, f"/v1/tickets/{ticket.id}/messages"))[-1]
    reason = last["relay_error"]
    assert reason.startswith("the business account @acme_shop removed the bot's connection (")
    assert "BUSINESS_CONNECTION_INVALID" in reason
    # Events of one instant have no order between them: compared as a set of states.
    assert sorted(c["state"] for c in await _changes(relay)) == ["active", "disabled", "removed"]

    header_id = ticket.header_message_id
    assert header_id is not None

    async def said_in_topic() -> bool:
        header = telegram.message(desk.chat_id, header_id)
        in_topic = [
            m.get("text", "") for m in telegram.sent_messages(desk.chat_id, bot_id=desk.bot.id)
        ]
        return f"⚠️ Not delivered to the customer: {reason}" in in_topic and (
            "⚠️ Replies cannot reach the customer: the account removed the bot."
            in header.get("text", "")
        )

    await eventually(said_in_topic, timeout=STEP_SECONDS)
    desk_view = await _api(relay, f"/v1/support/desks/{desk.id}")
    assert desk_view["business_connections"][0]["state"] == "removed"
    assert "are you there?" not in [text for _, text, _ in _chat(emulator, connection_id)]
