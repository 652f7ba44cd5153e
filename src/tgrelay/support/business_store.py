"""A desk bot's Telegram Business connections: rows in, records out, in the caller's
transaction."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import tables
from tgrelay.support.models import BusinessAccount, BusinessConnection, ConnectionState

connections = tables.support_business_connections


def account_json(account: BusinessAccount) -> str:
    return json.dumps(
        {
            "first_name": account.first_name,
            "last_name": account.last_name,
            "username": account.username,
        }
    )


async def connection(
    conn: AsyncConnection, connection_id: str, *, for_update: bool = False
) -> BusinessConnection | None:
    query = select(connections).where(connections.c.id == connection_id)
    if for_update:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _to_connection(row)


async def of_bot(conn: AsyncConnection, bot_id: int) -> list[BusinessConnection]:
    """The bot's connections, the earliest made first."""
    rows = await conn.execute(
        select(connections)
        .where(connections.c.bot_id == bot_id)
        .order_by(connections.c.created_at, connections.c.id)
    )
    return [_to_connection(row) for row in rows]


async def add(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(connections).values(**values))


async def change(conn: AsyncConnection, connection_id: str, **values: Any) -> None:
    await conn.execute(
        update(connections).where(connections.c.id == connection_id).values(**values)
    )


def _to_connection(row: Row[Any]) -> BusinessConnection:
    user = json.loads(row.user)
    return BusinessConnection(
        id=row.id,
        workspace_id=row.workspace_id,
        bot_id=row.bot_id,
        account=BusinessAccount(
            id=row.user_id,
            first_name=user["first_name"],
            last_name=user.get("last_name"),
            username=user.get("username"),
        ),
        can_reply=row.can_reply,
        is_enabled=row.is_enabled,
        state=ConnectionState(row.state),
        connected_at=row.connected_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
