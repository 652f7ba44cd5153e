"""The desk page lists its bot's Telegram Business connections and how each stands; a
ticket page says its channel."""

from __future__ import annotations

from tests.e2e.desks import make_desk
from tests.e2e.harness import Tgrelay, eventually
from tests.support.desks import ADA
from tgrelay.support import business_store, ticket_store
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import browser, table_rows
from .test_support_pages import timeless

SHOP = {"id": 5550001, "is_bot": False, "first_name": "Acme Shop", "username": "acme_shop"}


async def test_the_desk_page_shows_business_connections_and_a_ticket_its_channel(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Before any account connects the page says how to; after, a row per connection with
    its state (warned when it cannot reply); a business ticket's page names the account."""
    desk = await make_desk(relay, emulator, name="Help")
    async with browser(relay, relay.api_key) as client:
        before = await client.get(f"/ui/desks/{desk.id}")
        update = emulator.emulator.connect_business(
            desk.bot.id, SHOP, rights={"can_read_messages": True}
        )
        connection_id = update["business_connection"]["id"]

        async def recorded() -> bool:
            async with relay.runtime.db.engine.connect() as conn:
                return await business_store.connection(conn, connection_id) is not None

        await eventually(recorded, timeout=30.0)
        emulator.emulator.business_message(connection_id, ADA, "hello shop")

        async def opened() -> str | None:
            async with relay.runtime.db.engine.connect() as conn:
                found = await ticket_store.latest_of_customer(
                    conn, desk.bot.id, ADA["id"], business_connection_id=connection_id
                )
            return None if found is None else found.id

        async def is_open() -> bool:
            return await opened() is not None

        await eventually(is_open, timeout=30.0)
        ticket_id = await opened()
        after = await client.get(f"/ui/desks/{desk.id}")
        ticket_page = await client.get(f"/ui/tickets/{ticket_id}")

    assert 'id="business-connections-none"' in before.text
    assert timeless(table_rows(after.text)) == [
        ["@acme_shop", "⚠️ cannot reply", "no", "yes", "<time>"],
    ]
    assert (
        '<dd id="ticket-channel">via Business: @acme_shop · '
        "⚠️ Replies cannot reach the customer: the account does not let the bot reply.</dd>"
    ) in ticket_page.text
