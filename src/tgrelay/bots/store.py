"""The bots table: rows in, `ConnectedBot` records out, and status changes with their audit row.

Only `bots.service` and `bots.jobs` call this; other domains ask the service. Functions join
the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Row, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, errors
from tgrelay.bots.models import BotMode, BotStatus, ConflictKind, ConnectedBot, Holding
from tgrelay.db import prepared, tables
from tgrelay.settings import Settings

log = structlog.get_logger(__name__)

bots = tables.bots
StatusPair = tuple[BotStatus | None, ConflictKind | None]  # None: no row before (a new bot)
# A bot in one of these states receives nothing, so the poller leaves it alone.
NOT_POLLED = (BotStatus.DISCONNECTED, BotStatus.TOKEN_REVOKED)


async def load(conn: AsyncConnection, bot_id: int, *, for_update: bool = False) -> Row[Any] | None:
    query = select(bots).where(bots.c.id == bot_id)
    if for_update:
        query = query.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises
    return (await conn.execute(query)).first()


async def reload(conn: AsyncConnection, bot_id: int) -> Row[Any]:
    """A row this transaction has just written."""
    row = await load(conn, bot_id)
    if row is None:
        raise errors.NotFound(f"no bot {bot_id}")
    return row


async def every(conn: AsyncConnection) -> list[Row[Any]]:
    """Every bots row, by id (an operator's tool: bots number in the hundreds at most)."""
    return list(await conn.execute(select(bots).order_by(bots.c.id)))


async def in_workspace(conn: AsyncConnection, workspace_id: str, bot_id: int) -> Row[Any]:
    """A workspace's bot; another workspace's is NotFound exactly like a missing one."""
    row = (
        await conn.execute(
            select(bots).where(bots.c.id == bot_id, bots.c.workspace_id == workspace_id)
        )
    ).first()
    if row is None:
        raise errors.NotFound(f"no bot {bot_id} in this workspace")
    return row


async def of_workspace(conn: AsyncConnection, workspace_id: str) -> list[Row[Any]]:
    rows = await conn.execute(
        select(bots)
        .where(bots.c.workspace_id == workspace_id)
        .order_by(bots.c.created_at, bots.c.id)
    )
    return list(rows)


async def polled(conn: AsyncConnection) -> list[tuple[int, str]]:
    """(id, token ciphertext) of the polling-mode bots worth a getUpdates call."""
    rows = await conn.execute(
        select(bots.c.id, bots.c.token_ciphertext)
        .where(bots.c.mode == BotMode.POLLING, bots.c.status.not_in(NOT_POLLED))
        .order_by(bots.c.id)
    )
    return [(int(row.id), str(row.token_ciphertext)) for row in rows]


async def due_for_check(conn: AsyncConnection, checked_before: datetime) -> list[int]:
    """Ids of connected bots not checked since `checked_before` (or never)."""
    rows = await conn.execute(
        select(bots.c.id)
        .where(
            bots.c.status != BotStatus.DISCONNECTED,
            or_(bots.c.last_checked_at.is_(None), bots.c.last_checked_at < checked_before),
        )
        .order_by(bots.c.id)
    )
    return [int(row.id) for row in rows]


async def holdings(conn: AsyncConnection, bot_ids: Collection[int]) -> dict[int, Holding]:
    rows = await _HOLDINGS(conn, {"bot_ids": list(bot_ids)})
    return {
        int(row.id): Holding(
            bot_id=int(row.id),
            username=row.username,
            workspace_id=row.workspace_id,
            connected_since=row.connected_since,
        )
        for row in rows
    }


# Built once, like the other statements an updates batch runs: a fresh `in_` coerced each
# id and hashed the statement anew on every batch.
_HOLDINGS = prepared.Prepared(
    select(bots.c.id, bots.c.username, bots.c.workspace_id, bots.c.connected_since).where(
        bots.c.id.in_(bindparam("bot_ids", expanding=True))
    )
)


async def add(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(bots).values(**values))


async def change(
    conn: AsyncConnection,
    bot_id: int,
    values: Mapping[str, Any],
    *,
    if_generation: int | None = None,
    if_token_ciphertext: str | None = None,
) -> bool:
    """Update a bot's columns; True if it did.

    With `if_generation`, only while the bot still has that secret generation and is not
    disconnected, so a rotation or disconnect that landed meanwhile is not overwritten.
    With `if_token_ciphertext`, only while that is still the stored token's ciphertext (key
    rotation: a token changed meanwhile is not put back).
    """
    statement = update(bots).where(bots.c.id == bot_id)
    if if_generation is not None:
        statement = statement.where(
            bots.c.secret_generation == if_generation, bots.c.status != BotStatus.DISCONNECTED
        )
    if if_token_ciphertext is not None:
        statement = statement.where(bots.c.token_ciphertext == if_token_ciphertext)
    result = await conn.execute(statement.values(**values))
    return result.rowcount == 1


async def change_status(
    conn: AsyncConnection,
    bot: ConnectedBot,
    new: tuple[BotStatus, ConflictKind | None],
    *,
    reason: str,
    actor: str,
    now: datetime,
) -> bool:
    """Write a status and its audit row, only when it differs from the bot's; True if it did."""
    old: StatusPair = (bot.status, bot.conflict_kind)
    if old == new:
        return False
    status, conflict_kind = new
    await change(
        conn, bot.id, {"status": status, "conflict_kind": conflict_kind, "updated_at": now}
    )
    await audit_status(
        conn,
        bot_id=bot.id,
        workspace_id=bot.workspace_id,
        old=old,
        new=new,
        reason=reason,
        actor=actor,
        now=now,
    )
    log.info("bot.status_changed", bot_id=bot.id, old=bot.status, new=status, reason=reason)
    return True


async def audit_status(
    conn: AsyncConnection,
    *,
    bot_id: int,
    workspace_id: str,
    old: StatusPair,
    new: StatusPair,
    reason: str,
    actor: str,
    now: datetime,
) -> None:
    """The `bot.status_changed` audit row."""
    await audit.record(
        conn,
        action="bot.status_changed",
        actor=actor,
        now=now,
        workspace_id=workspace_id,
        bot_id=bot_id,
        detail={
            "old": old[0],
            "new": new[0],
            "old_conflict_kind": old[1],
            "conflict_kind": new[1],
            "reason": reason,
        },
    )


def status_of(row: Row[Any]) -> StatusPair:
    return BotStatus(row.status), _conflict_kind(row.conflict_kind)


def to_bot(settings: Settings, row: Row[Any]) -> ConnectedBot:
    """The record of a row: everything but the token."""
    mode = BotMode(row.mode)
    return ConnectedBot(
        id=row.id,
        workspace_id=row.workspace_id,
        username=row.username,
        first_name=row.first_name,
        token_fingerprint=row.token_fingerprint,
        mode=mode,
        status=BotStatus(row.status),
        conflict_kind=_conflict_kind(row.conflict_kind),
        secret_generation=row.secret_generation,
        previous_secret_valid_until=row.previous_secret_valid_until,
        webhook_url=(
            settings.webhook_url(row.id)
            if mode is BotMode.WEBHOOK and settings.uses_webhooks
            else None
        ),
        last_error_message=row.last_error_message,
        last_error_at=row.last_error_at,
        last_checked_at=row.last_checked_at,
        connected_since=row.connected_since,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def aware(value: datetime | None) -> datetime | None:
    """An aware UTC datetime (aiogram's are; this guards the Timestamp column's check)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _conflict_kind(value: str | None) -> ConflictKind | None:
    return None if value is None else ConflictKind(value)
