"""Send jobs of the kinds queued before the outbox (issue 18), handed to it after an upgrade.

A hub upgraded while some were pending would otherwise leave their alerts queued for ever:
each becomes the outbox sends it stands for, in its job's transaction.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.groups import delivery, store
from tgrelay.groups.models import NotificationStatus
from tgrelay.queue import worker
from tgrelay.queue.models import Job
from tgrelay.runtime import Runtime
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.actions import Action

LEGACY_NOTIFICATION = "send_notification"
LEGACY_MESSAGE = "send_message"


def register(registry: worker.Registry, rt: Runtime) -> None:
    """Register the old send kinds: each becomes the outbox sends it stands for, in its
    job's transaction."""

    async def notification(conn: AsyncConnection, job: Job) -> None:
        found = await store.notification(conn, str(job.payload.get("notification_id")))
        if found is None or found.status is not NotificationStatus.QUEUED:
            return
        target = await store.connection(conn, found.connection_id)
        if target is None:
            refused = outcomes.Failed(
                method="sendMessage", action=Action.FAIL, reason="the connection was deleted"
            )
            await delivery.record_part(conn, rt, found.id, refused)
            return
        await delivery.enqueue_notification(
            rt, conn, found, target, first_part=len(found.message_ids)
        )

    async def message(conn: AsyncConnection, job: Job) -> None:
        payload = job.payload
        bot_id, chat_id, text = int(payload["bot_id"]), int(payload["chat_id"]), payload["text"]
        connection_id = payload.get("connection_id")
        if isinstance(connection_id, str):
            target = await store.connection(conn, connection_id)
            wants_topic = (
                target is not None and target.is_forum and target.message_thread_id is None
            )
            await delivery.enqueue_confirmation(
                rt,
                conn,
                connection_id=connection_id,
                bot_id=bot_id,
                chat_id=chat_id,
                text=text,
                topic=target.topic if target is not None and wants_topic else None,
            )
            return
        buttons = [(str(label), str(url)) for label, url in payload.get("url_buttons") or []]
        keyboard = messages.Keyboard.column(
            *(messages.UrlButton(text=label, url=url) for label, url in buttons)
        )
        await outbox.enqueue(
            conn,
            rt,
            messages.SendText(
                bot_id=bot_id,
                chat_id=chat_id,
                text=text,
                message_thread_id=payload.get("message_thread_id"),
                keyboard=keyboard if buttons else None,
            ),
        )

    registry.register(LEGACY_NOTIFICATION, notification)
    registry.register(LEGACY_MESSAGE, message)
