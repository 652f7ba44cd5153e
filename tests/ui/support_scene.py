"""What the support pages' tests start from: a desk bot and a forum group linked to it."""

from __future__ import annotations

import secrets
from typing import Any

from tests.e2e.harness import Tgrelay
from tgrelay.groups import store as groups_store
from tgrelay.groups.models import ConnectionStatus
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import ANN


async def desk_bot(relay: Tgrelay, emulator: RunningEmulator, username: str) -> BotRecord:
    """A bot connected to the relay's workspace."""
    bot = emulator.emulator.create_bot(username)
    await relay.connect_bot(bot.token)
    return bot


async def forum_connection(
    relay: Tgrelay, emulator: RunningEmulator, bot: BotRecord, title: str, **rights: bool
) -> str:
    """A forum where Ann made the bot an administrator (less the rights set False), linked to
    the workspace as the connect flow would have linked it; the connection's id."""
    telegram = emulator.emulator
    chat: dict[str, Any] = telegram.create_chat("supergroup", title, is_forum=True)
    telegram.add_bot(chat["id"], bot.id, ANN, status="administrator", rights=rights or None)
    connection_id = f"conn_{secrets.token_hex(8)}"
    rt = relay.runtime
    async with rt.db.transaction() as conn:
        await groups_store.add_connection(
            conn,
            {
                "id": connection_id,
                "workspace_id": relay.workspace_id,
                "bot_id": bot.id,
                "chat_id": chat["id"],
                "chat_type": "supergroup",
                "title": title,
                "is_forum": True,
                "status": ConnectionStatus.ACTIVE.value,
                "connected_by_user_id": ANN["id"],
                "created_at": rt.clock(),
                "updated_at": rt.clock(),
            },
        )
    return connection_id
