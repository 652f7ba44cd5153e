"""A support desk for end-to-end tests: a bot connected through the API, administrator of a
forum supergroup, and a desk made with `POST /v1/support/desks` (checked live against the
emulator). The group's link is another domain's flow: its connection row is written as is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.desks import BOB
from tgrelay.groups import store as groups_store
from tgrelay.testing.emulator.state import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Tgrelay

CONNECTION_ID = "conn_desk"


@dataclass(frozen=True, kw_only=True)
class Desk:
    bot: BotRecord
    chat_id: int  # the forum supergroup
    id: str  # the desk's


async def make_desk(relay: Tgrelay, emulator: RunningEmulator, **settings: Any) -> Desk:
    """The desk, with `settings` in its POST body (greeting, assignment, auto-answers…)."""
    bot = emulator.emulator.create_bot("help_bot")
    await relay.connect_bot(bot.token)
    chat = emulator.emulator.create_chat("supergroup", "Support", is_forum=True)
    emulator.emulator.add_bot(chat["id"], bot.id, BOB, status="administrator")
    now = relay.runtime.clock()
    async with relay.runtime.db.transaction() as conn:
        await groups_store.add_connection(
            conn,
            {
                "id": CONNECTION_ID,
                "workspace_id": relay.workspace_id,
                "bot_id": bot.id,
                "chat_id": chat["id"],
                "chat_type": "supergroup",
                "title": "Support",
                "is_forum": True,
                "status": "active",
                "created_at": now,
                "updated_at": now,
            },
        )
    created = await relay.api.post(
        "/v1/support/desks",
        json={"bot_id": bot.id, "connection_id": CONNECTION_ID, **settings},
    )
    assert created.status_code == 201, created.text
    return Desk(bot=bot, chat_id=chat["id"], id=str(created.json()["id"]))
