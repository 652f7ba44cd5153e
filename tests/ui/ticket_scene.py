"""Tickets for the ticket pages' tests, made as customers make them: a private message to a
desk's bot in the emulator, pushed to the running relay, which opens the ticket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for
from tgrelay.support import desks, ticket_store
from tgrelay.support import service as support
from tgrelay.support.models import RelayStatus, Ticket, TicketMessage
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .support_scene import desk_bot, forum_connection

ADA: dict[str, Any] = {
    "id": 7001,
    "is_bot": False,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada",
    "language_code": "en",
}
BEN: dict[str, Any] = {"id": 7002, "is_bot": False, "first_name": "Ben", "language_code": "de"}
CY: dict[str, Any] = {"id": 7003, "is_bot": False, "first_name": "Cy", "username": "cy"}


@asynccontextmanager
async def quick_relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    """The relay on webhooks, with Telegram's per-chat and per-group send pacing lifted: a
    ticket's opening sends (topic, header, copy, greeting) go at once instead of over ~10 s.
    The pages read the outcomes; the pacing has its own tests."""
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        send_limit_per_chat=(30, 1.0),
        send_limit_per_group=(1800, 60.0),
    )
    async with running_tgrelay(settings, port) as relay:
        yield relay


@dataclass(frozen=True, kw_only=True)
class Desk:
    id: str
    name: str
    bot: BotRecord


async def make_desk(
    relay: Tgrelay, emulator: RunningEmulator, username: str, title: str, name: str
) -> Desk:
    """A desk named `name` of a fresh bot on a fresh forum group called `title`."""
    bot = await desk_bot(relay, emulator, username)
    forum = await forum_connection(relay, emulator, bot, title)
    principal = await workspaces.authenticate(relay.runtime.db, relay.api_key)
    desk = await desks.create_desk(
        relay.runtime, principal, bot_id=bot.id, connection_id=forum, name=name
    )
    return Desk(id=desk.id, name=desk.name, bot=bot)


async def customer_writes(
    relay: Tgrelay, emulator: RunningEmulator, desk: Desk, customer: dict[str, Any], text: str
) -> Ticket:
    """The customer writes to the desk's bot; once the relay recorded it, their ticket."""
    emulator.emulator.send_message(desk.bot.id, customer, None, text)

    async def recorded() -> bool:
        found = await latest_ticket(relay, desk, customer)
        if found is None:
            return False
        messages = await support.list_messages(relay.runtime, relay.workspace_id, found.id)
        return any(m.text == text for m in messages)

    await eventually(recorded)
    found = await latest_ticket(relay, desk, customer)
    assert found is not None
    return found


async def latest_ticket(relay: Tgrelay, desk: Desk, customer: dict[str, Any]) -> Ticket | None:
    async with relay.runtime.db.engine.connect() as conn:
        return await ticket_store.latest_of_customer(conn, desk.bot.id, customer["id"])


async def relayed(relay: Tgrelay, ticket_id: str, count: int) -> list[TicketMessage]:
    """The ticket's messages once `count` of them exist and none waits in the outbox."""

    async def settled() -> bool:
        found = await support.list_messages(relay.runtime, relay.workspace_id, ticket_id)
        return len(found) >= count and all(m.relay_status != RelayStatus.PENDING for m in found)

    await eventually(settled)
    return await support.list_messages(relay.runtime, relay.workspace_id, ticket_id)
