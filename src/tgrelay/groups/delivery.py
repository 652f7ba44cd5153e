"""Alerts to group connections through the outbox, and what groups do about a chat's fate.

An alert's parts are outbox sends in the connection's order; the recipient NOTIFICATION
checks before each that the alert is still wanted and where the connection is now, and
records each part's message id, then `notification.sent` / `notification.failed`, in the
send job's finishing transaction. The membership reactions (a group became a supergroup;
the bot was removed) are the chat-fate hooks the outbox calls on a send job's connection,
and the update handlers call on theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit
from tgrelay.bots import service as bots_service
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.groups import announcements, store
from tgrelay.groups.models import (
    BOT_DISCONNECTED,
    Connection,
    ConnectionStatus,
    Notification,
    NotificationStatus,
)
from tgrelay.runtime import Runtime
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.actions import Action
from tgrelay.telegram.outbox.registry import Outbox, Result

log = structlog.get_logger(__name__)

# Outbox recipients of this domain.
NOTIFICATION = "groups.notification"  # a part of an alert: {"notification_id", "part"}
TOPIC = "groups.topic"  # the forum topic a connection asked for: {"connection_id"}
CONNECTION = "groups.connection"  # a message to a connection's chat and topic: {"connection_id"}


def connection_key(connection_id: str) -> str:
    """One connection's sends, in order: its topic, its confirmation, then its alerts."""
    return f"notify:{connection_id}"


async def enqueue_notification(
    rt: Runtime,
    conn: AsyncConnection,
    notification: Notification,
    target: Connection,
    *,
    first_part: int = 0,
) -> None:
    """Queue an alert's parts in the caller's transaction; one connection's alerts go in order."""
    for part, text in enumerate(notification.parts):
        if part < first_part:
            continue
        await outbox.enqueue(
            conn,
            rt,
            messages.SendText(
                bot_id=target.bot_id,
                chat_id=target.chat_id,
                text=text,
                parse_mode=notification.parse_mode,
                message_thread_id=target.message_thread_id,
            ),
            result=Result(
                handler=NOTIFICATION,
                reference={"notification_id": notification.id, "part": part},
            ),
            ordering_key=connection_key(target.id),
        )


async def enqueue_confirmation(
    rt: Runtime,
    conn: AsyncConnection,
    *,
    connection_id: str,
    bot_id: int,
    chat_id: int,
    text: str,
    topic: str | None,
) -> None:
    """Queue a connection's first message, after creating its forum topic when it asks for
    one; both share the connection's key, so its alerts find the topic made."""
    key = connection_key(connection_id)
    reference = {"connection_id": connection_id}
    if topic:
        await outbox.enqueue(
            conn,
            rt,
            messages.CreateTopic(bot_id=bot_id, chat_id=chat_id, name=topic),
            result=Result(handler=TOPIC, reference=reference),
            ordering_key=key,
        )
    await outbox.enqueue(
        conn,
        rt,
        messages.SendText(bot_id=bot_id, chat_id=chat_id, text=text),
        result=Result(handler=CONNECTION, reference=reference),
        ordering_key=key,
    )


def install(outbox_wiring: Outbox, rt: Runtime) -> None:
    """Give the outbox this domain's recipients and chat-fate hooks (app start-up)."""

    async def notification_ready(
        conn: AsyncConnection, reference: Mapping[str, Any]
    ) -> outcomes.Readiness:
        notification = await store.notification(conn, str(reference["notification_id"]))
        # Not queued any more (an earlier part failed), or this part is recorded already.
        if notification is None or notification.status is not NotificationStatus.QUEUED:
            return outcomes.Drop()
        if len(notification.message_ids) != int(reference["part"]):
            return outcomes.Drop()
        target = await store.connection(conn, notification.connection_id)
        if target is None:
            return outcomes.Refuse(reason="the connection was deleted")
        if target.status is not ConnectionStatus.ACTIVE:
            return outcomes.Refuse(reason=f"{target.status.value}: {target.status_reason}")
        # Only while the connection's workspace still holds the bot: its suspension and the
        # bot's disconnect commit together, but a job may have read in between.
        if await bots_service.held_token(conn, rt, target.bot_id, target.workspace_id) is None:
            return outcomes.Refuse(reason=f"{ConnectionStatus.SUSPENDED}: {BOT_DISCONNECTED}")
        return outcomes.Go(destination=_destination(target))

    async def notification_finished(
        conn: AsyncConnection, reference: Mapping[str, Any], outcome: outcomes.Outcome
    ) -> None:
        await record_part(conn, rt, str(reference["notification_id"]), outcome)

    async def topic_ready(
        conn: AsyncConnection, reference: Mapping[str, Any]
    ) -> outcomes.Readiness:
        target = await store.connection(conn, str(reference["connection_id"]))
        if target is None or target.message_thread_id is not None:
            return outcomes.Drop()
        return outcomes.Go(destination=messages.Destination(chat_id=target.chat_id))

    async def topic_finished(
        conn: AsyncConnection, reference: Mapping[str, Any], outcome: outcomes.Outcome
    ) -> None:
        connection_id = str(reference["connection_id"])
        if isinstance(outcome, outcomes.Failed):
            # No rights or no forum after all: alerts go to the general chat instead.
            log.warning(
                "group.topic_not_created", connection_id=connection_id, reason=outcome.reason
            )
            return
        await store.change_connection(
            conn, connection_id, message_thread_id=outcome.message_thread_id, updated_at=rt.clock()
        )

    async def connection_ready(
        conn: AsyncConnection, reference: Mapping[str, Any]
    ) -> outcomes.Readiness:
        target = await store.connection(conn, str(reference["connection_id"]))
        return outcomes.Go(destination=None if target is None else _destination(target))

    async def migrated(conn: AsyncConnection, bot_id: int, old: int, new: int) -> None:
        await migrate_chat(conn, rt, bot_id=bot_id, old_chat_id=old, new_chat_id=new)

    async def gone(conn: AsyncConnection, bot_id: int, chat_id: int, reason: str) -> None:
        affected = await store.connections_in_chat(conn, bot_id, chat_id)
        await set_bot_removed(conn, rt, affected, reason=reason)

    outbox_wiring.recipient(NOTIFICATION, ready=notification_ready, finished=notification_finished)
    outbox_wiring.recipient(TOPIC, ready=topic_ready, finished=topic_finished)
    outbox_wiring.recipient(CONNECTION, ready=connection_ready)
    outbox_wiring.on_migrated(migrated)
    outbox_wiring.on_chat_gone(gone)


def _destination(target: Connection) -> messages.Destination:
    return messages.Destination(chat_id=target.chat_id, message_thread_id=target.message_thread_id)


# --- notifications -------------------------------------------------------------------------


async def record_part(
    conn: AsyncConnection, rt: Runtime, notification_id: str, outcome: outcomes.Outcome
) -> None:
    """A part's outcome, in its send job's finishing transaction: its message id (and the
    alert sent once every part is), or the alert failed."""
    notification = await store.notification(conn, notification_id)
    if notification is None or notification.status is not NotificationStatus.QUEUED:
        return
    now = rt.clock()
    message_ids = list(notification.message_ids)
    if isinstance(outcome, outcomes.Failed):
        reason = outcome.reason
        if outcome.action is Action.CHAT_GONE:
            reason = f"{ConnectionStatus.BOT_REMOVED}: {reason}"
        await store.change_notification(
            conn,
            notification_id,
            status=NotificationStatus.FAILED.value,
            error=reason,
            updated_at=now,
        )
        await _announce(conn, rt, notification, NotificationStatus.FAILED, message_ids, reason)
        log.warning("notification.failed", notification_id=notification_id, reason=reason)
        return
    assert outcome.message_id is not None
    message_ids.append(outcome.message_id)
    if len(message_ids) < len(notification.parts):
        await store.change_notification(
            conn, notification_id, message_ids=message_ids, updated_at=now
        )
        return
    await store.change_notification(
        conn,
        notification_id,
        message_ids=message_ids,
        updated_at=now,
        status=NotificationStatus.SENT.value,
        sent_at=now,
    )
    await _announce(conn, rt, notification, NotificationStatus.SENT, message_ids)
    log.info("notification.sent", notification_id=notification_id, messages=len(message_ids))


async def _announce(
    conn: AsyncConnection,
    rt: Runtime,
    notification: Notification,
    status: NotificationStatus,
    message_ids: list[int],
    error: str | None = None,
) -> None:
    """The notification.sent / notification.failed event, in the transaction recording it."""
    await events.emit(
        conn,
        rt,
        workspace_id=notification.workspace_id,
        event_type=(
            EventType.NOTIFICATION_SENT
            if status is NotificationStatus.SENT
            else EventType.NOTIFICATION_FAILED
        ),
        data=catalog.NotificationData(
            notification_id=notification.id,
            connection_id=notification.connection_id,
            idempotency_key=notification.idempotency_key,
            status=status.value,
            message_ids=message_ids,
            error=error,
        ),
    )


# --- membership reactions ------------------------------------------------------------------


async def migrate_chat(
    conn: AsyncConnection, rt: Runtime, *, bot_id: int, old_chat_id: int, new_chat_id: int
) -> None:
    """Rewrite a migrated group's connections to its new id, keep the alias, audit each."""
    now = rt.clock()
    moved = await store.move_chat(
        conn, bot_id=bot_id, old_chat_id=old_chat_id, new_chat_id=new_chat_id, now=now
    )
    for connection in moved:
        await audit.record(
            conn,
            action="group.migrated",
            actor=audit.TELEGRAM,
            now=now,
            workspace_id=connection.workspace_id,
            bot_id=bot_id,
            detail={
                "connection_id": connection.id,
                "old_chat_id": old_chat_id,
                "chat_id": new_chat_id,
            },
        )
        await announcements.announce_status(
            conn,
            rt,
            connection,
            status="migrated",
            chat_id=new_chat_id,
            previous_chat_id=old_chat_id,
            reason="the group became a supergroup",
        )
        log.info("group.migrated", connection_id=connection.id, chat_id=new_chat_id)


async def set_bot_removed(
    conn: AsyncConnection, rt: Runtime, targets: Sequence[Connection], *, reason: str
) -> None:
    """Mark connections bot_removed (kicked, left or refused with 403), auditing each change."""
    now = rt.clock()
    for target in targets:
        if target.status is ConnectionStatus.BOT_REMOVED:
            continue
        await store.change_connection(
            conn,
            target.id,
            status=ConnectionStatus.BOT_REMOVED.value,
            status_reason=reason,
            updated_at=now,
        )
        await audit.record(
            conn,
            action="group.status_changed",
            actor=audit.TELEGRAM,
            now=now,
            workspace_id=target.workspace_id,
            bot_id=target.bot_id,
            detail={"connection_id": target.id, "status": "bot_removed", "reason": reason},
        )
        await announcements.announce_status(
            conn, rt, target, status="bot_removed", chat_id=target.chat_id, reason=reason
        )
        log.info("group.bot_removed", connection_id=target.id, reason=reason)
