"""The groups tables: rows in, records out. Functions join the caller's transaction.

Only the groups domain calls this; other domains ask `groups.service`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import dialects, tables
from tgrelay.groups.models import (
    OPEN_STATES,
    Connection,
    ConnectionStatus,
    ConnectSession,
    Notification,
    NotificationStatus,
    SessionState,
    TelegramUser,
)

sessions = tables.connect_sessions
connections = tables.group_connections
notifications = tables.notifications
aliases = tables.chat_aliases
_OPEN = [state.value for state in OPEN_STATES]


# --- connect sessions ----------------------------------------------------------------------


async def add_session(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(sessions).values(**values))


async def session(
    conn: AsyncConnection, session_id: str, *, workspace_id: str | None = None
) -> ConnectSession | None:
    query = select(sessions).where(sessions.c.id == session_id)
    if workspace_id is not None:
        query = query.where(sessions.c.workspace_id == workspace_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _to_session(row)


async def session_by_token(conn: AsyncConnection, bot_id: int, token: str) -> ConnectSession | None:
    row = (
        await conn.execute(
            select(sessions).where(sessions.c.token == token, sessions.c.bot_id == bot_id)
        )
    ).first()
    return None if row is None else _to_session(row)


async def sessions_waiting_for_group(conn: AsyncConnection, bot_id: int) -> list[ConnectSession]:
    """Sessions of a bot in phase 2, newest first."""
    rows = await conn.execute(
        select(sessions)
        .where(sessions.c.bot_id == bot_id, sessions.c.state == SessionState.WAITING_GROUP.value)
        .order_by(sessions.c.created_at.desc())
    )
    return [_to_session(row) for row in rows]


async def cancel_open_sessions(
    conn: AsyncConnection, *, workspace_id: str, bot_id: int
) -> list[str]:
    """Cancel every open session of (workspace, bot), dropping their tokens; their ids."""
    result = await conn.execute(
        update(sessions)
        .where(
            sessions.c.workspace_id == workspace_id,
            sessions.c.bot_id == bot_id,
            sessions.c.state.in_(_OPEN),
        )
        .values(state=SessionState.CANCELLED.value, token=None)
        .returning(sessions.c.id)
    )
    return [row.id for row in result]


async def change_session(conn: AsyncConnection, session_id: str, **values: Any) -> None:
    await conn.execute(update(sessions).where(sessions.c.id == session_id).values(**values))


def _to_session(row: Row[Any]) -> ConnectSession:
    user = (
        None
        if row.user_id is None
        else TelegramUser(
            id=row.user_id, first_name=row.user_first_name, username=row.user_username
        )
    )
    return ConnectSession(
        id=row.id,
        workspace_id=row.workspace_id,
        bot_id=row.bot_id,
        token=row.token,
        state=SessionState(row.state),
        topic=row.topic,
        created_at=row.created_at,
        expires_at=row.expires_at,
        user=user,
        verified_at=row.verified_at,
        group_started_at=row.group_started_at,
        connection_id=row.connection_id,
    )


# --- connections ---------------------------------------------------------------------------


async def add_connection(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(connections).values(**values))


async def connection(
    conn: AsyncConnection, connection_id: str, *, workspace_id: str | None = None
) -> Connection | None:
    query = select(connections).where(
        connections.c.id == connection_id, connections.c.deleted_at.is_(None)
    )
    if workspace_id is not None:
        query = query.where(connections.c.workspace_id == workspace_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _to_connection(row)


async def connections_of_workspace(conn: AsyncConnection, workspace_id: str) -> list[Connection]:
    rows = await conn.execute(
        select(connections)
        .where(connections.c.workspace_id == workspace_id, connections.c.deleted_at.is_(None))
        .order_by(connections.c.created_at, connections.c.id)
    )
    return [_to_connection(row) for row in rows]


async def connections_in_chat(conn: AsyncConnection, bot_id: int, chat_id: int) -> list[Connection]:
    rows = await conn.execute(
        select(connections).where(
            connections.c.bot_id == bot_id,
            connections.c.chat_id == chat_id,
            connections.c.deleted_at.is_(None),
        )
    )
    return [_to_connection(row) for row in rows]


async def change_connection(conn: AsyncConnection, connection_id: str, **values: Any) -> None:
    await conn.execute(
        update(connections).where(connections.c.id == connection_id).values(**values)
    )


async def move_chat(
    conn: AsyncConnection, *, bot_id: int, old_chat_id: int, new_chat_id: int, now: datetime
) -> list[Connection]:
    """Point a bot's connections in a migrated group at its supergroup and keep the alias.

    Returns the connections that moved (none when another event already moved them).
    """
    moved = await connections_in_chat(conn, bot_id, old_chat_id)
    if moved:
        await conn.execute(
            update(connections)
            .where(connections.c.bot_id == bot_id, connections.c.chat_id == old_chat_id)
            .values(chat_id=new_chat_id, chat_type="supergroup", updated_at=now)
        )
    await conn.execute(
        dialects.upsert(conn.dialect.name, aliases)
        .values(bot_id=bot_id, old_chat_id=old_chat_id, chat_id=new_chat_id, created_at=now)
        .on_conflict_do_nothing(index_elements=["bot_id", "old_chat_id"])
    )
    return moved


def _to_connection(row: Row[Any]) -> Connection:
    return Connection(
        id=row.id,
        workspace_id=row.workspace_id,
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        chat_type=row.chat_type,
        title=row.title,
        is_forum=bool(row.is_forum),
        topic=row.topic,
        message_thread_id=row.message_thread_id,
        status=ConnectionStatus(row.status),
        status_reason=row.status_reason,
        connected_by_user_id=row.connected_by_user_id,
        session_id=row.session_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- notifications -------------------------------------------------------------------------


async def add_notification(conn: AsyncConnection, notification: Notification) -> None:
    """Insert a new notification; the row `_to_notification` reads back."""
    await conn.execute(
        insert(notifications).values(
            id=notification.id,
            workspace_id=notification.workspace_id,
            connection_id=notification.connection_id,
            idempotency_key=notification.idempotency_key,
            text=notification.text,
            parse_mode=notification.parse_mode,
            parts=orjson.dumps(notification.parts).decode(),
            status=notification.status.value,
            message_ids=orjson.dumps(notification.message_ids).decode(),
            error=notification.error,
            created_at=notification.created_at,
            updated_at=notification.updated_at,
            sent_at=notification.sent_at,
            parts_attempted=notification.parts_attempted,
        )
    )


async def notification(
    conn: AsyncConnection, notification_id: str, *, workspace_id: str | None = None
) -> Notification | None:
    query = select(notifications).where(notifications.c.id == notification_id)
    if workspace_id is not None:
        query = query.where(notifications.c.workspace_id == workspace_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _to_notification(row)


async def notifications_of_connection(
    conn: AsyncConnection, connection_id: str, *, before: Notification | None, limit: int
) -> list[Notification]:
    """A connection's notifications, newest first, older than `before` when given."""
    query = select(notifications).where(notifications.c.connection_id == connection_id)
    if before is not None:
        query = query.where(
            or_(
                notifications.c.created_at < before.created_at,
                and_(
                    notifications.c.created_at == before.created_at,
                    notifications.c.id < before.id,
                ),
            )
        )
    query = query.order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
    return [_to_notification(row) for row in await conn.execute(query.limit(limit))]


async def notification_by_key(
    conn: AsyncConnection, workspace_id: str, idempotency_key: str
) -> Notification | None:
    row = (
        await conn.execute(
            select(notifications).where(
                notifications.c.workspace_id == workspace_id,
                notifications.c.idempotency_key == idempotency_key,
            )
        )
    ).first()
    return None if row is None else _to_notification(row)


async def change_notification(conn: AsyncConnection, notification_id: str, **values: Any) -> None:
    if "message_ids" in values:
        values["message_ids"] = orjson.dumps(list(values["message_ids"])).decode()
    await conn.execute(
        update(notifications).where(notifications.c.id == notification_id).values(**values)
    )


def _to_notification(row: Row[Any]) -> Notification:
    return Notification(
        id=row.id,
        workspace_id=row.workspace_id,
        connection_id=row.connection_id,
        idempotency_key=row.idempotency_key,
        text=row.text,
        parse_mode=row.parse_mode,
        parts=tuple(orjson.loads(row.parts)),
        status=NotificationStatus(row.status),
        message_ids=tuple(orjson.loads(row.message_ids)),
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        sent_at=row.sent_at,
        parts_attempted=row.parts_attempted,
    )
