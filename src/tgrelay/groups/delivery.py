"""Sending to Telegram from jobs: alerts to connections and the bot's own replies.

Jobs do not sleep through a limit: a send that the rate limiter (or Telegram's 429) defers is
rescheduled, so other chats keep flowing; only the last SEND_LEAD_SECONDS before a slot are
waited in the job. Each notification records a part as attempted before sending
it (DESIGN promise 2): a crash between the send and the record is counted, not hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, errors
from tgrelay.bots import service as bots_service
from tgrelay.db import engine as db_engine
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
from tgrelay.queue import models as queue_models
from tgrelay.queue import retry, worker
from tgrelay.queue import store as job_store
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)

SEND_NOTIFICATION = "send_notification"
SEND_MESSAGE = "send_message"
# Payload key of a send slot reserved on an earlier run (unix seconds on the worker's clock).
SLOT_AT = "slot_at"
# Payload key: [part, job attempt] of an attempt recorded by a run that was then rescheduled.
MARKED = "attempt_marked"
# A rate-limited send comes back this long before its slot and waits the rest in the job: the
# longest a worker slot is held waiting, and what the claim and reads may take without
# making the send late.
SEND_LEAD_SECONDS = 0.05
# uvloop's timers count whole milliseconds and fire up to one early (a quarter of short sleeps
# did here): a job that slept exactly until its chat freed found it still busy, and went
# round the queue again for nothing. Its sleeps here run this much longer.
TIMER_SLACK_SECONDS = 0.001


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    """A message the bot sends on its own behalf (connect-flow replies, confirmations)."""

    bot_id: int
    chat_id: int
    text: str
    message_thread_id: int | None = None
    url_buttons: Sequence[tuple[str, str]] = ()  # (label, url), one per keyboard row
    # Set for a group's confirmation: the connection to give a forum topic first, if asked.
    connection_id: str | None = None


async def enqueue_notification(
    rt: Runtime, conn: AsyncConnection, notification_id: str, connection_id: str
) -> None:
    """Queue an alert's send in the caller's transaction; one connection's alerts go in order."""
    await _enqueue(
        rt,
        conn,
        queue_models.NewJob(
            kind=SEND_NOTIFICATION,
            payload={"notification_id": notification_id},
            ordering_key=_connection_key(connection_id),
        ),
    )


async def enqueue_message(rt: Runtime, conn: AsyncConnection, message: OutgoingMessage) -> None:
    """Queue a bot message in the caller's transaction (sent after it commits)."""
    payload: dict[str, Any] = {
        "bot_id": message.bot_id,
        "chat_id": message.chat_id,
        "text": message.text,
        "message_thread_id": message.message_thread_id,
        "url_buttons": [list(button) for button in message.url_buttons],
        "connection_id": message.connection_id,
    }
    await _enqueue(
        rt,
        conn,
        queue_models.NewJob(
            kind=SEND_MESSAGE,
            payload=payload,
            # A connection's confirmation shares its alerts' key, so it runs first and creates
            # the forum topic they are posted in.
            ordering_key=(
                _connection_key(message.connection_id)
                if message.connection_id
                else f"send:{message.bot_id}:{message.chat_id}"
            ),
        ),
    )


def _connection_key(connection_id: str) -> str:
    return f"notify:{connection_id}"


async def _enqueue(rt: Runtime, conn: AsyncConnection, job: queue_models.NewJob) -> None:
    # Sends are often asked for inside another queue's job (a reply to an update): its
    # worker must be woken once they commit, or they wait for its next look.
    db_engine.after_commit(conn, functools.partial(rt.notify_queue, job.queue))
    await job_store.enqueue(
        conn, [job], now=rt.clock(), default_max_attempts=rt.settings.job_max_attempts
    )


def register(registry: worker.Registry, rt: Runtime) -> None:
    """Register the send jobs; neither holds a transaction while it waits on Telegram."""

    async def send_notification(job: queue_models.Job) -> queue_models.Finish | None:
        notification_id = job.payload.get("notification_id")
        if not isinstance(notification_id, str):
            raise retry.PermanentFailure(f"{SEND_NOTIFICATION} needs a notification_id")
        turn = _Turn(rt, job)
        try:
            return await _send_notification(rt, notification_id, turn)
        except errors.TelegramCircuitOpen as exc:
            raise _wait_for_probe(exc, turn) from None
        except errors.TelegramUnavailable as exc:
            if job.attempts >= job.max_attempts:
                await _fail(rt, notification_id, f"Telegram unreachable: {exc.message}")
            raise

    async def send_message(job: queue_models.Job) -> None:
        turn = _Turn(rt, job)
        try:
            await _send_message(rt, _message_of(job.payload), turn)
        except errors.TelegramCircuitOpen as exc:
            raise _wait_for_probe(exc, turn) from None

    registry.register(SEND_NOTIFICATION, send_notification, transactional=False)
    registry.register(SEND_MESSAGE, send_message, transactional=False)


def _wait_for_probe(exc: errors.TelegramCircuitOpen, turn: _Turn) -> retry.Reschedule:
    """The bot's breaker refused the call before it left: try again when a probe may go,
    without spending an attempt (the request never reached Telegram)."""
    return retry.Reschedule(
        exc.retry_after,
        f"Telegram unreachable (circuit open): {exc.message}",
        payload=turn.forget_slot(),
    )


# --- notifications -------------------------------------------------------------------------


async def _send_notification(
    rt: Runtime, notification_id: str, turn: _Turn
) -> queue_models.Finish | None:
    """Send the notification's parts in order; the last one is recorded by the returned
    Finish, in the transaction that completes the job (one transaction less per alert)."""
    # One connection for every read: each run of a rate-limited alert does them all again.
    async with rt.db.engine.connect() as conn:
        notification = await store.notification(conn, notification_id)
        if notification is None or notification.status is not NotificationStatus.QUEUED:
            return None
        target = await store.connection(conn, notification.connection_id)
        token = None
        if target is not None and target.status is ConnectionStatus.ACTIVE:
            # Only while the connection's workspace still holds the bot: its suspension and
            # the bot's disconnect commit together, but a job may have read in between.
            token = await bots_service.held_token(conn, rt, target.bot_id, target.workspace_id)
    if target is None:
        await _fail(rt, notification_id, "the connection was deleted")
        return None
    if token is None:
        if target.status is ConnectionStatus.ACTIVE:
            await _fail(rt, notification_id, f"{ConnectionStatus.SUSPENDED}: {BOT_DISCONNECTED}")
        else:
            await _fail(rt, notification_id, f"{target.status.value}: {target.status_reason}")
        return None
    message_ids = list(notification.message_ids)
    if notification.parts_attempted > len(message_ids) and not turn.marked(len(message_ids)):
        # An earlier run handed a part to Telegram and stopped before recording the answer.
        rt.metrics.possible_duplicate_sends.inc()
    client = rt.telegram.for_token(token)
    while len(message_ids) < len(notification.parts):
        index = len(message_ids)
        await turn.wait_for_slot(target, _attempt_of(notification_id, index))
        try:
            async with turn.sending(target):
                sent = await client.send_message(
                    chat_id=target.chat_id,
                    text=notification.parts[index],
                    parse_mode=notification.parse_mode,
                    message_thread_id=target.message_thread_id,
                )
        except errors.TelegramBadRequest as exc:
            if exc.migrate_to_chat_id is None:
                await _fail(rt, notification_id, exc.message)
                return None
            target = await _follow_migration(rt, target, exc.migrate_to_chat_id)
            continue
        except errors.TelegramForbidden as exc:
            await mark_bot_removed(rt, target, reason=exc.message)
            await _fail(rt, notification_id, f"bot_removed: {exc.message}")
            return None
        except errors.TelegramUnauthorized as exc:
            await _fail(rt, notification_id, f"the bot's token was refused: {exc.message}")
            return None
        except errors.TelegramRetryAfter as exc:
            raise await _flood_controlled(rt, target, exc, turn) from None
        message_ids.append(sent.message_id)
        if len(message_ids) < len(notification.parts):
            async with rt.db.transaction() as conn:
                await store.change_notification(
                    conn, notification_id, message_ids=message_ids, updated_at=rt.clock()
                )
    sent_at = rt.clock()

    async def record_sent(conn: AsyncConnection) -> None:
        await store.change_notification(
            conn,
            notification_id,
            message_ids=message_ids,
            updated_at=sent_at,
            status=NotificationStatus.SENT.value,
            sent_at=sent_at,
        )
        await _announce(conn, rt, notification, NotificationStatus.SENT, message_ids)
        log.info("notification.sent", notification_id=notification_id, messages=len(message_ids))

    return record_sent


def _attempt_of(notification_id: str, part: int) -> Attempt:
    async def record(conn: AsyncConnection) -> None:
        await store.change_notification(conn, notification_id, parts_attempted=part + 1)

    return Attempt(part=part, record=record)


async def _fail(rt: Runtime, notification_id: str, reason: str) -> None:
    async with rt.db.transaction() as conn:
        await store.change_notification(
            conn,
            notification_id,
            status=NotificationStatus.FAILED.value,
            error=reason,
            updated_at=rt.clock(),
        )
        failed = await store.notification(conn, notification_id)
        if failed is not None:
            await _announce(
                conn, rt, failed, NotificationStatus.FAILED, list(failed.message_ids), reason
            )
    log.warning("notification.failed", notification_id=notification_id, reason=reason)


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


# --- the bot's own messages ----------------------------------------------------------------


def _message_of(payload: dict[str, Any]) -> OutgoingMessage:
    try:
        return OutgoingMessage(
            bot_id=int(payload["bot_id"]),
            chat_id=int(payload["chat_id"]),
            text=str(payload["text"]),
            message_thread_id=payload.get("message_thread_id"),
            url_buttons=[(str(label), str(url)) for label, url in payload.get("url_buttons", [])],
            connection_id=payload.get("connection_id"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise retry.PermanentFailure(f"malformed {SEND_MESSAGE} payload: {exc}") from None


async def _send_message(rt: Runtime, message: OutgoingMessage, turn: _Turn) -> None:
    async with rt.db.engine.connect() as conn:
        chat_id = await store.current_chat_id(conn, message.bot_id, message.chat_id)
        target = (
            None
            if message.connection_id is None
            else await store.connection(conn, message.connection_id)
        )
    client = rt.telegram.for_token(await bots_service.token_of(rt, message.bot_id))
    thread_id = message.message_thread_id
    if target is not None:
        thread_id = await _ensure_topic(rt, client, target)
    limited = target or _Destination(bot_id=message.bot_id, chat_id=chat_id)
    await turn.wait_for_slot(limited)
    try:
        async with turn.sending(limited):
            await client.send_message(
                chat_id=chat_id,
                text=message.text,
                message_thread_id=thread_id,
                url_buttons=message.url_buttons,
            )
    except errors.TelegramRetryAfter as exc:
        raise await _flood_controlled(rt, limited, exc, turn) from None
    except errors.TelegramBadRequest as exc:
        if exc.migrate_to_chat_id is None:
            raise retry.PermanentFailure(exc.message) from None
        async with rt.db.transaction() as conn:
            await store.move_chat(
                conn,
                bot_id=message.bot_id,
                old_chat_id=chat_id,
                new_chat_id=exc.migrate_to_chat_id,
                now=rt.clock(),
            )
        raise retry.Reschedule(
            0, "the group became a supergroup", payload=turn.forget_slot()
        ) from None
    except (errors.TelegramForbidden, errors.TelegramUnauthorized) as exc:
        raise retry.PermanentFailure(exc.message) from None


async def _ensure_topic(rt: Runtime, client: Any, target: Connection) -> int | None:
    """The forum topic a connection asked for, created on first use."""
    if target.message_thread_id is not None or not target.topic or not target.is_forum:
        return target.message_thread_id
    try:
        thread_id = int(await client.create_forum_topic(chat_id=target.chat_id, name=target.topic))
    except errors.TelegramBadRequest as exc:
        # No rights or no forum after all: alerts go to the general chat instead.
        log.warning("group.topic_not_created", connection_id=target.id, reason=exc.message)
        return None
    async with rt.db.transaction() as conn:
        await store.change_connection(
            conn, target.id, message_thread_id=thread_id, updated_at=rt.clock()
        )
    return thread_id


# --- shared by both ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Destination:
    bot_id: int
    chat_id: int


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """A notification part about to be sent, recorded as attempted before its request."""

    part: int
    record: queue_models.Finish  # writes that record in the transaction it is given


class _Turn:
    """A send job's place in the rate limiter's queue, carried between its runs.

    The limiter reserves the job a slot (so jobs waiting on one bot never stampede); the job is
    rescheduled to that instant with the slot in its payload, and then sends without asking
    again. The worker never runs a job before its run_at, so a carried slot is due. When the
    chat or group itself is busy nothing is reserved, and the job simply asks again later.
    """

    def __init__(self, rt: Runtime, job: queue_models.Job) -> None:
        self._rt = rt
        self._payload = dict(job.payload)
        self._attempt = job.attempts

    def marked(self, part: int) -> bool:
        """Whether this job recorded its attempt at `part` and has not sent it since: true only
        when the run that recorded it was rescheduled (which gives the attempt back), not when
        it crashed or failed after the request."""
        return self._payload.get(MARKED) == [part, self._attempt]

    def mark(self, part: int) -> None:
        self._payload[MARKED] = [part, self._attempt]

    async def wait_for_slot(
        self, target: Connection | _Destination, attempt: Attempt | None = None
    ) -> None:
        """Return when this send may go now; otherwise raise Reschedule to just before its slot.

        The job comes back SEND_LEAD_SECONDS early and waits the rest here, so its claim and
        reads happen before the slot instead of after it: with one send per chat interval,
        every late start pushes all of that chat's later sends back.

        `attempt` is recorded before this returns, never between the slot and the request (a
        late send crowds the sends reserved after it): with the reschedule that carries the
        slot, which costs no transaction of its own, or else before the slot's last wait.
        """
        slot_at = self._payload.pop(SLOT_AT, None)
        if isinstance(slot_at, int | float):
            early = slot_at - self._rt.clock().timestamp()
            if early > 2 * SEND_LEAD_SECONDS:  # another process's clock ran ahead: come back
                raise retry.Reschedule(
                    early - SEND_LEAD_SECONDS,
                    "Telegram send limits",
                    payload={**self._payload, SLOT_AT: slot_at},
                )
            # A slot already past (a busy worker, a retry after an error) is used now, not
            # reserved anew: the chat's and group's keys already count it, so a new reservation
            # would wait a whole interval behind this job's own slot. `sending` still checks
            # the start against the sends that really started.
            await self._ready_at(slot_at, attempt)
            return
        for _ in range(2):  # once more after a short wait for the chat or group to free
            slot = await self._rt.rate_limiter.reserve(target.bot_id, target.chat_id)
            if slot.wait_seconds > SEND_LEAD_SECONDS:
                break
            if slot.reserved or slot.wait_seconds <= 0:
                await self._ready_at(self._rt.clock().timestamp() + slot.wait_seconds, attempt)
                return
            await _sleep_past(slot.wait_seconds)
        if not slot.reserved:
            raise retry.Reschedule(
                slot.wait_seconds - SEND_LEAD_SECONDS,
                "the chat or group is busy",
                payload=dict(self._payload),
            )
        record = None
        if attempt is not None and not self.marked(attempt.part):
            record = attempt.record
            self.mark(attempt.part)
        raise retry.Reschedule(
            slot.wait_seconds - SEND_LEAD_SECONDS,
            "Telegram send limits",
            payload={**self._payload, SLOT_AT: self._rt.clock().timestamp() + slot.wait_seconds},
            record=record,
        )

    async def _ready_at(self, slot_at: float, attempt: Attempt | None) -> None:
        """Record the attempt (in a transaction of its own, unless an earlier run did), then
        return once the slot (unix seconds) has passed: the record's time is the wait's."""
        if attempt is not None and not self.marked(attempt.part):
            async with self._rt.db.transaction() as conn:
                await attempt.record(conn)
            self.mark(attempt.part)
        await _sleep_past(slot_at - self._rt.clock().timestamp())

    @contextlib.asynccontextmanager
    async def sending(self, target: Connection | _Destination) -> AsyncIterator[None]:
        """Wrap the Bot API request: its start is checked against the sends that really went
        (runs late together must not crowd a window) and recorded, and its end tells the
        limiter when it reached Telegram at the latest (sooner when Telegram answered it).

        A start refused here keeps its reservation: the job waits a short refusal out, and
        comes back for a long one with its slot moved, as reserving anew would find the chat
        or group busy with this very slot (on bench/alerts.py, a 3 s group interval lost).
        """
        limiter = self._rt.rate_limiter
        send_id = secrets.token_hex(8)
        while (wait := await limiter.start(target.bot_id, target.chat_id, send_id)) > 0:
            if wait > SEND_LEAD_SECONDS:
                slot_at = self._rt.clock().timestamp() + wait
                raise retry.Reschedule(
                    wait - SEND_LEAD_SECONDS,
                    "recent sends fill the window",
                    payload={**self._payload, SLOT_AT: slot_at},
                )
            await _sleep_past(wait)
        answered = False
        try:
            yield
            answered = True
        except errors.TelegramError as exc:
            # Telegram's own refusals were answered; an unreachable Telegram was not.
            answered = not isinstance(exc, errors.TelegramUnavailable)
            raise
        finally:
            await limiter.finish(target.bot_id, target.chat_id, send_id, answered=answered)

    def forget_slot(self) -> dict[str, Any]:
        """The payload for a run that must reserve again (after a 429 or a migration)."""
        self._payload.pop(SLOT_AT, None)
        return dict(self._payload)


async def _sleep_past(seconds: float) -> None:
    """Return once `seconds` have surely passed (at once when there is nothing to wait)."""
    if seconds > 0:
        await asyncio.sleep(seconds + TIMER_SLACK_SECONDS)


async def _flood_controlled(
    rt: Runtime, target: Connection | _Destination, exc: errors.TelegramRetryAfter, turn: _Turn
) -> retry.Reschedule:
    """Honour a 429 for that chat only; the job comes back when Telegram allows it."""
    await rt.rate_limiter.hold_chat(target.bot_id, target.chat_id, exc.retry_after)
    log.warning(
        "telegram.flood_controlled",
        bot_id=target.bot_id,
        chat_id=target.chat_id,
        retry_after=exc.retry_after,
    )
    return retry.Reschedule(
        exc.retry_after, "Telegram flood control (429)", payload=turn.forget_slot()
    )


async def _follow_migration(rt: Runtime, target: Connection, new_chat_id: int) -> Connection:
    """A send hit a group that became a supergroup: move the connection and go on there."""
    async with rt.db.transaction() as conn:
        await migrate_chat(
            conn, rt, bot_id=target.bot_id, old_chat_id=target.chat_id, new_chat_id=new_chat_id
        )
    return replace(target, chat_id=new_chat_id, chat_type="supergroup")


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


async def mark_bot_removed(rt: Runtime, target: Connection, *, reason: str) -> None:
    async with rt.db.transaction() as conn:
        await set_bot_removed(conn, rt, [target], reason=reason)


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
