"""The group.status_changed event of a connection: one place for every status change.

Its own module because both groups.delivery (bot removed, chat migrated) and
groups.suspension (bot disconnected or taken over) announce changes, and the second is
imported by bots.service, which groups.delivery itself imports.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.groups.models import Connection
from tgrelay.runtime import Runtime


async def announce_status(
    conn: AsyncConnection,
    rt: Runtime,
    connection: Connection,
    *,
    status: str,
    chat_id: int,
    reason: str | None,
    previous_chat_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Emit group.status_changed for `connection`, in the caller's transaction."""
    await events.emit(
        conn,
        rt,
        workspace_id=connection.workspace_id,
        event_type=EventType.GROUP_STATUS_CHANGED,
        data=catalog.GroupStatusData(
            connection_id=connection.id,
            bot_id=connection.bot_id,
            chat_id=chat_id,
            status=status,
            previous_chat_id=previous_chat_id,
            reason=reason,
        ),
        now=now,
    )
