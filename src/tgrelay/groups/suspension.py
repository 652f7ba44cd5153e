"""Connections follow their bot: suspended while their workspace does not hold it, active again
when it does.

`follow_hold` listens to `bots.service.HOLD_CHANGED` (tgrelay.wiring adds it), so it runs
inside the transaction that disconnects, takes over or connects a bot: a connection is never
active for a bot its workspace let go. Groups sits above bots (docs/design-notes.md, "Domain
order"): bots tells groups through the hook and never imports it.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit
from tgrelay.bots.models import HoldChanged
from tgrelay.groups import announcements, store
from tgrelay.groups.models import BOT_DISCONNECTED, Connection, ConnectionStatus
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)


async def follow_hold(conn: AsyncConnection, rt: Runtime, change: HoldChanged) -> None:
    """Connections follow their bot's hold: resumed when held again, suspended when not."""
    follow = bot_held if change.held else bot_released
    await follow(
        conn,
        rt,
        workspace_id=change.workspace_id,
        bot_id=change.bot_id,
        actor=change.actor,
        now=change.now,
    )


async def bot_released(
    conn: AsyncConnection, rt: Runtime, *, workspace_id: str, bot_id: int, actor: str, now: datetime
) -> None:
    """The workspace no longer holds the bot: its active connections of the bot are suspended
    and its open connect sessions cancelled (their tokens must not link a group for whoever
    holds the bot next)."""
    for connection in await _of_bot(conn, workspace_id, bot_id, ConnectionStatus.ACTIVE):
        await _change(
            conn, rt, connection, ConnectionStatus.SUSPENDED, BOT_DISCONNECTED, actor, now
        )
    cancelled = await store.cancel_open_sessions(conn, workspace_id=workspace_id, bot_id=bot_id)
    if cancelled:
        log.info("connect_sessions.cancelled", bot_id=bot_id, sessions=cancelled)


async def bot_held(
    conn: AsyncConnection, rt: Runtime, *, workspace_id: str, bot_id: int, actor: str, now: datetime
) -> None:
    """The workspace holds the bot again: connections it suspended are active again (those
    the bot was removed from stay bot_removed)."""
    for connection in await _of_bot(conn, workspace_id, bot_id, ConnectionStatus.SUSPENDED):
        await _change(conn, rt, connection, ConnectionStatus.ACTIVE, "bot connected", actor, now)


async def _of_bot(
    conn: AsyncConnection, workspace_id: str, bot_id: int, status: ConnectionStatus
) -> list[Connection]:
    return [
        connection
        for connection in await store.connections_of_workspace(conn, workspace_id)
        if connection.bot_id == bot_id and connection.status is status
    ]


async def _change(
    conn: AsyncConnection,
    rt: Runtime,
    connection: Connection,
    status: ConnectionStatus,
    reason: str,
    actor: str,
    now: datetime,
) -> None:
    """One connection's status change, with its audit row and group.status_changed event."""
    await store.change_connection(
        conn,
        connection.id,
        status=status.value,
        status_reason=None if status is ConnectionStatus.ACTIVE else reason,
        updated_at=now,
    )
    await audit.record(
        conn,
        action="group.status_changed",
        actor=actor,
        now=now,
        workspace_id=connection.workspace_id,
        bot_id=connection.bot_id,
        detail={"connection_id": connection.id, "status": status.value, "reason": reason},
    )
    await announcements.announce_status(
        conn,
        rt,
        connection,
        status=status.value,
        chat_id=connection.chat_id,
        reason=reason,
        now=now,
    )
    log.info("group.status_changed", connection_id=connection.id, status=status, reason=reason)
