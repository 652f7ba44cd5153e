"""A handoff step for real: a desk's bot opens a ticket whose topic shows what the flow
collected (a sensitive answer masked); a bot without a desk tells the user, and the
conversation fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conversations.running import (
    ADA,
    add_flow,
    conversation_events,
    only_conversation,
    replies,
    says,
)
from tests.dispatching import Dispatching, dispatching
from tests.support.desks import GREETING, make_desk, requests
from tgrelay.conversations import runtime
from tgrelay.support import handoff, ticket_store
from tgrelay.support.models import Direction, MessageSource
from tgrelay.testing.emulator_server import RunningEmulator

WHO = {"flow": "help", "version": 1, "chat_id": ADA["id"], "user_id": ADA["id"]}
HELP: dict[str, Any] = {
    "name": "help",
    "trigger": {"type": "command", "command": "/helpme"},
    "steps": [
        {
            "id": "topic",
            "kind": "ask",
            "message": "What is it about?",
            "input": {"type": "text"},
            "variable": "topic",
        },
        {
            "id": "account",
            "kind": "ask",
            "message": "Your account number?",
            "input": {"type": "text"},
            "variable": "account",
            "sensitive": True,
        },
        {"id": "human", "kind": "handoff", "message": "A colleague will take it from here."},
    ],
}
NOTE = "Conversation “help” handed over\n\naccount: ***\ntopic: my invoice is wrong"


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Dispatching]:
    async with dispatching(emulator, tmp_path) as found:
        await add_flow(found, HELP)
        yield found


async def test_a_handoff_opens_a_ticket_with_the_variables_in_its_topic(
    relay: Dispatching,
) -> None:
    """At the handoff step of a desk's bot, a ticket opens for the user; its first message
    is the handoff, sent as text, and a note lists the variables, the sensitive one masked."""
    desk = await make_desk(relay)
    await says(relay, desk.bot.id, "/helpme")
    await says(relay, desk.bot.id, "my invoice is wrong")
    produced = await says(relay, desk.bot.id, "DE-4711")

    async with relay.rt.db.engine.connect() as conn:
        ticket = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
        assert ticket is not None
        found = await ticket_store.list_messages(conn, ticket.id)
    row = await only_conversation(relay)
    assert [r.text for r in requests(produced) if r.chat_id == ADA["id"]] == [  # type: ignore[union-attr]
        GREETING,  # the desk's, as for any new ticket
        "A colleague will take it from here.",
    ]
    assert [(m.direction, m.source, m.text, m.customer_message_id) for m in found] == [
        (Direction.CUSTOMER, MessageSource.API, "Conversation “help” handed over", None),
        (Direction.NOTE, MessageSource.API, NOTE, None),
    ]
    assert conversation_events(produced) == [
        (
            "conversation.completed",
            {**WHO, "variables": {"topic": "my invoice is wrong", "account": "DE-4711"}},
        )
    ]
    assert (row.status, row.step_id) == ("completed", "human")


async def test_without_a_desk_the_handoff_says_so_and_the_conversation_fails(
    relay: Dispatching,
) -> None:
    """A bot that serves no desk cannot hand over: the user is told, step_failed gives the
    reason and the conversation is abandoned as failed."""
    bot = await relay.connect_bot("shop_bot")
    await says(relay, bot.id, "/helpme")
    await says(relay, bot.id, "my invoice is wrong")
    produced = await says(relay, bot.id, "DE-4711")

    row = await only_conversation(relay)
    assert replies(produced) == [(runtime.NO_DESK, [])]
    assert conversation_events(produced) == [
        ("conversation.step_failed", {**WHO, "step": "human", "reason": handoff.NO_DESK}),
        ("conversation.abandoned", {**WHO, "reason": "failed", "step": "human"}),
    ]
    assert (row.status, row.end_reason) == ("abandoned", "failed")
