"""The desk's setup tables (desks, agents, snippets): rows in, records out. Functions join
the caller's transaction. Tickets and their messages are in `ticket_store`.

Only the support domain calls this; other domains ask `support.service`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import prepared, tables
from tgrelay.support.models import LIVE_STATUSES, Agent, Assignment, Desk, Snippet

desks = tables.support_desks
agents = tables.support_agents
snippets = tables.support_snippets
tickets = tables.tickets

# --- desks ---------------------------------------------------------------------------------


async def add_desk(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(desks).values(**values))


async def desk(
    conn: AsyncConnection, desk_id: str, *, workspace_id: str | None = None
) -> Desk | None:
    """A desk not deleted (of `workspace_id` when given)."""
    query = select(desks).where(desks.c.id == desk_id, desks.c.deleted_at.is_(None))
    if workspace_id is not None:
        query = query.where(desks.c.workspace_id == workspace_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _to_desk(row)


async def desk_of_bot(conn: AsyncConnection, bot_id: int) -> Desk | None:
    """The desk whose bot's private chats open tickets (a bot serves at most one desk)."""
    row = (
        await conn.execute(
            select(desks).where(desks.c.bot_id == bot_id, desks.c.deleted_at.is_(None))
        )
    ).first()
    return None if row is None else _to_desk(row)


async def desks_of_bots(conn: AsyncConnection, bot_ids: Collection[int]) -> dict[int, Desk]:
    """The desks of these bots, by bot id (bots without a desk are left out)."""
    if not bot_ids:
        return {}
    rows = await _DESKS_OF_BOTS(conn, {"bot_ids": sorted(bot_ids)})
    return {desk.bot_id: desk for desk in map(_to_desk, rows)}


# Built once: every updates batch asks.
_DESKS_OF_BOTS = prepared.Prepared(
    select(desks).where(
        desks.c.bot_id.in_(bindparam("bot_ids", expanding=True)), desks.c.deleted_at.is_(None)
    )
)


async def list_desks(conn: AsyncConnection, workspace_id: str) -> list[Desk]:
    rows = await conn.execute(
        select(desks)
        .where(desks.c.workspace_id == workspace_id, desks.c.deleted_at.is_(None))
        .order_by(desks.c.created_at, desks.c.id)
    )
    return [_to_desk(row) for row in rows]


async def change_desk(conn: AsyncConnection, desk_id: str, **values: Any) -> None:
    await conn.execute(update(desks).where(desks.c.id == desk_id).values(**values))


def _to_desk(row: Row[Any]) -> Desk:
    return Desk(
        id=row.id,
        workspace_id=row.workspace_id,
        bot_id=row.bot_id,
        connection_id=row.connection_id,
        name=row.name,
        assignment=Assignment(row.assignment),
        reopen_window_seconds=row.reopen_window_seconds,
        greeting_text=row.greeting_text,
        closing_text=row.closing_text,
        created_at=row.created_at,
        updated_at=row.updated_at,
        kb_auto_answer_threshold=row.kb_auto_answer_threshold,
        kb_answer_wait_seconds=row.kb_answer_wait_seconds,
    )


# --- agents --------------------------------------------------------------------------------


async def agent(conn: AsyncConnection, workspace_id: str, telegram_user_id: int) -> Agent | None:
    row = (
        await conn.execute(
            select(agents).where(
                agents.c.workspace_id == workspace_id,
                agents.c.telegram_user_id == telegram_user_id,
            )
        )
    ).first()
    return None if row is None else _to_agent(row)


async def agent_by_username(
    conn: AsyncConnection, workspace_id: str, username: str
) -> Agent | None:
    """The agent last seen with this @username (without the @; Telegram ignores case)."""
    row = (
        await conn.execute(
            select(agents).where(
                agents.c.workspace_id == workspace_id,
                func.lower(agents.c.username) == username.lower(),
            )
        )
    ).first()
    return None if row is None else _to_agent(row)


async def list_agents(conn: AsyncConnection, workspace_id: str) -> list[Agent]:
    rows = await conn.execute(
        select(agents)
        .where(agents.c.workspace_id == workspace_id)
        .order_by(agents.c.name, agents.c.telegram_user_id)
    )
    return [_to_agent(row) for row in rows]


async def add_agent(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(agents).values(**values))


async def change_agent(
    conn: AsyncConnection, workspace_id: str, telegram_user_id: int, **values: Any
) -> None:
    await conn.execute(
        update(agents)
        .where(agents.c.workspace_id == workspace_id, agents.c.telegram_user_id == telegram_user_id)
        .values(**values)
    )


async def next_in_rotation(conn: AsyncConnection, workspace_id: str) -> Agent | None:
    """Round robin's pick: the active agent with free capacity who was given a ticket
    longest ago (never first), counting the live tickets they hold."""
    held = (
        select(func.count())
        .select_from(tickets)
        .where(
            tickets.c.workspace_id == workspace_id,
            tickets.c.assignee_id == agents.c.telegram_user_id,
            tickets.c.status.in_([status.value for status in LIVE_STATUSES]),
        )
        .scalar_subquery()
    )
    row = (
        await conn.execute(
            select(agents)
            .where(
                agents.c.workspace_id == workspace_id,
                agents.c.active.is_(True),
                or_(agents.c.capacity.is_(None), held < agents.c.capacity),
            )
            .order_by(
                agents.c.last_assigned_at.is_not(None),
                agents.c.last_assigned_at,
                agents.c.telegram_user_id,
            )
            .limit(1)
        )
    ).first()
    return None if row is None else _to_agent(row)


def _to_agent(row: Row[Any]) -> Agent:
    return Agent(
        workspace_id=row.workspace_id,
        telegram_user_id=row.telegram_user_id,
        name=row.name,
        username=row.username,
        external_id=row.external_id,
        capacity=row.capacity,
        active=row.active,
        last_assigned_at=row.last_assigned_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- snippets ------------------------------------------------------------------------------


async def snippet_named(conn: AsyncConnection, workspace_id: str, name: str) -> Snippet | None:
    row = (
        await conn.execute(
            select(snippets).where(snippets.c.workspace_id == workspace_id, snippets.c.name == name)
        )
    ).first()
    return None if row is None else _to_snippet(row)


async def snippet(conn: AsyncConnection, workspace_id: str, snippet_id: str) -> Snippet | None:
    row = (
        await conn.execute(
            select(snippets).where(
                snippets.c.workspace_id == workspace_id, snippets.c.id == snippet_id
            )
        )
    ).first()
    return None if row is None else _to_snippet(row)


async def list_snippets(conn: AsyncConnection, workspace_id: str) -> list[Snippet]:
    rows = await conn.execute(
        select(snippets).where(snippets.c.workspace_id == workspace_id).order_by(snippets.c.name)
    )
    return [_to_snippet(row) for row in rows]


async def add_snippet(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(snippets).values(**values))


async def change_snippet(conn: AsyncConnection, snippet_id: str, **values: Any) -> None:
    await conn.execute(update(snippets).where(snippets.c.id == snippet_id).values(**values))


async def delete_snippet(conn: AsyncConnection, snippet_id: str) -> None:
    """Snippets keep no history: a reply sent from one is in the ticket as text."""
    await conn.execute(delete(snippets).where(snippets.c.id == snippet_id))


def _to_snippet(row: Row[Any]) -> Snippet:
    return Snippet(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        text=row.text,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
