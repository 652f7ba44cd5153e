"""The ticket store on SQLite and PostgreSQL: per-workspace numbers under concurrent opens,
and the `for_update` reads a ticket's changes begin with."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from tgrelay.db.engine import Database
from tgrelay.support import ticket_store
from tgrelay.support.models import (
    Customer,
    Direction,
    MessageSource,
    RelayStatus,
    Ticket,
    TicketStatus,
)
from tgrelay.workspaces import service as workspaces

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ADA = Customer(id=7001, first_name="Ada", last_name=None, username="ada", language_code="en")
OPENS = 12  # at once: within the PostgreSQL pool (16), so each open has its own connection


async def test_concurrent_opens_number_tickets_one_to_n(database: Database) -> None:
    """Tickets opened at once in one workspace get the numbers 1..N, each once; on PostgreSQL
    every open holds its own connection and all meet before any takes a number."""
    workspace_id = await _workspace(database, "Acme")
    # SQLite lets one write transaction in at a time (BEGIN IMMEDIATE): opens cannot meet.
    together = asyncio.Barrier(OPENS) if database.is_postgres else None

    numbers = await asyncio.gather(
        *(_open(database, workspace_id, f"tkt_{i}", together) for i in range(OPENS))
    )

    assert sorted(numbers) == list(range(1, OPENS + 1))
    assert await _numbers(database, workspace_id) == list(range(OPENS, 0, -1))


async def test_workspaces_count_separately(database: Database) -> None:
    """Opens interleaved across two workspaces number each workspace's tickets from 1."""
    acme = await _workspace(database, "Acme")
    globex = await _workspace(database, "Globex")

    opened = await asyncio.gather(
        *(
            _open(database, workspace_id, f"tkt_{workspace_id}_{i}", None)
            for i in range(4)
            for workspace_id in (acme, globex)
        )
    )

    assert sorted(opened) == [1, 1, 2, 2, 3, 3, 4, 4]
    assert (await _numbers(database, acme), await _numbers(database, globex)) == (
        [4, 3, 2, 1],
        [4, 3, 2, 1],
    )


async def test_for_update_reads_find_the_ticket(database: Database) -> None:
    """Each locking read (by id, the customer's latest, by topic, by a message of the
    customer's chat) finds its ticket, and the customer's latest is their newest."""
    workspace_id = await _workspace(database, "Acme")
    await _open(database, workspace_id, "tkt_old", None, thread_id=11)
    await _open(database, workspace_id, "tkt_new", None, thread_id=12)
    async with database.transaction() as conn:
        await ticket_store.add_message(
            conn,
            {
                "ticket_id": "tkt_old",
                "direction": Direction.CUSTOMER.value,
                "source": MessageSource.TELEGRAM.value,
                "author_id": ADA.id,
                "kind": "text",
                "text": "help",
                "customer_message_id": 501,
                "relay_status": RelayStatus.PENDING.value,
                "created_at": NOW,
            },
        )

    async with database.transaction() as conn:
        by_id = await ticket_store.ticket(
            conn, "tkt_old", workspace_id=workspace_id, for_update=True
        )
        latest = await ticket_store.latest_of_customer(conn, 1, ADA.id, for_update=True)
        in_topic = await ticket_store.ticket_in_topic(conn, -100, 12, for_update=True)
        other_workspace = await ticket_store.ticket(
            conn, "tkt_old", workspace_id="ws_other", for_update=True
        )
        by_message = await ticket_store.ticket_of_customer_message(
            conn, 1, ADA.id, 501, for_update=True
        )
        unknown_message = await ticket_store.ticket_of_customer_message(
            conn, 1, ADA.id, 502, for_update=True
        )

    found = (by_id, latest, in_topic, other_workspace, by_message, unknown_message)
    assert [_brief(t) for t in found] == [
        ("tkt_old", 1, 11),
        ("tkt_new", 2, 12),
        ("tkt_new", 2, 12),
        None,
        ("tkt_old", 1, 11),
        None,
    ]


@pytest.mark.postgres
async def test_a_locked_ticket_waits_for_the_holder(postgres_database: Database) -> None:
    """On PostgreSQL a second `for_update` read of a ticket waits until the first transaction
    commits, then sees its change (SQLite serializes writers and needs no lock)."""
    database = postgres_database
    workspace_id = await _workspace(database, "Acme")
    await _open(database, workspace_id, "tkt_1", None)

    async def second_reader() -> TicketStatus | None:
        async with database.transaction() as conn:
            found = await ticket_store.ticket(conn, "tkt_1", for_update=True)
            return None if found is None else found.status

    async with database.transaction() as holder:
        await ticket_store.ticket(holder, "tkt_1", for_update=True)
        reader = asyncio.create_task(second_reader())
        await _until_a_session_waits_for_a_lock(database, reader)
        await ticket_store.change_ticket(holder, "tkt_1", status=TicketStatus.PENDING.value)

    assert await reader == TicketStatus.PENDING


async def _workspace(database: Database, name: str) -> str:
    workspace, _key = await workspaces.create_workspace(database, name, now=NOW)
    return workspace.id


async def _open(
    database: Database,
    workspace_id: str,
    ticket_id: str,
    together: asyncio.Barrier | None,
    *,
    thread_id: int | None = None,
) -> int:
    """Open a ticket as conversation.open_ticket does (number, then row); its number."""
    async with database.transaction() as conn:
        if together is not None:
            await conn.execute(text("SELECT 1"))  # the connection is this open's, now
            await together.wait()
        number = await ticket_store.next_number(conn, workspace_id)
        await ticket_store.add_ticket(
            conn,
            {
                "id": ticket_id,
                "workspace_id": workspace_id,
                "number": number,
                "desk_id": "dsk_help",
                "bot_id": 1,
                "customer_chat_id": ADA.id,
                "customer_id": ADA.id,
                "customer": ticket_store.customer_json(ADA),
                "subject": "help",
                "status": TicketStatus.NEW.value,
                "topic_chat_id": -100,
                "topic_thread_id": thread_id,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
    return number


async def _numbers(database: Database, workspace_id: str) -> list[int]:
    async with database.engine.connect() as conn:
        listed = await ticket_store.list_tickets(conn, workspace_id, limit=100)
    return [t.number for t in listed]


def _brief(ticket: Ticket | None) -> tuple[str, int, int | None] | None:
    return None if ticket is None else (ticket.id, ticket.number, ticket.topic_thread_id)


async def _until_a_session_waits_for_a_lock(database: Database, task: asyncio.Task[object]) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        assert not task.done(), "the second read did not wait for the lock"
        async with database.engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no session waited for a lock within 10 s")
