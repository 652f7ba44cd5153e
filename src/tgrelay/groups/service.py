"""Use cases of the groups domain: connect sessions, connections, notifications.

API-facing functions open their own transaction; the update handlers (`groups.handlers`)
and the send jobs (`groups.delivery`) call the `store` inside theirs.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, errors, hooks
from tgrelay.bots import service as bots_service
from tgrelay.bots.models import BotStatus
from tgrelay.groups import delivery, rules, store
from tgrelay.groups.models import (
    Connection,
    ConnectionStatus,
    ConnectSession,
    Notification,
    NotificationStatus,
    SessionState,
)
from tgrelay.runtime import Runtime
from tgrelay.workspaces.models import Principal

log = structlog.get_logger(__name__)

# Asked before the groups handler answers a bare /start in a private chat, with the bot's id:
# True when another domain takes that bot's /start (support: a desk bot greets its customers
# instead); that domain's handler, which runs later, answers it. tgrelay.wiring adds them.
StartTaker = Callable[[AsyncConnection, int], Awaitable[bool]]
BARE_START_TAKEN: hooks.Key[StartTaker] = hooks.Key("groups.bare_start_taken")

# rules.TOKEN_LENGTH (32) URL-safe characters: 192 random bits, inside the 64-character
# deep-link payload.
TOKEN_BYTES = rules.TOKEN_LENGTH * 3 // 4


@dataclass(frozen=True, kw_only=True)
class SessionLinks:
    """Where a user goes to start linking: a private chat, or straight into a group."""

    start_link: str
    startgroup_link: str


@dataclass(frozen=True, kw_only=True)
class SessionView:
    session: ConnectSession  # with its effective state (expiry applied)
    bot_username: str
    links: SessionLinks | None  # None once the token is gone (used, expired, cancelled)
    connection: Connection | None


def links_for(bot_username: str, token: str) -> SessionLinks:
    from aiogram.utils.deep_linking import create_deep_link  # loaded at start-up

    return SessionLinks(
        start_link=create_deep_link(bot_username, "start", token),
        startgroup_link=create_deep_link(bot_username, "startgroup", token),
    )


# --- connect sessions ----------------------------------------------------------------------


async def create_session(
    rt: Runtime, principal: Principal, *, bot_id: int, topic: str | None
) -> SessionView:
    """A new session for a bot; any open session of the same bot and workspace is cancelled,
    so only the newest token works."""
    bot = await bots_service.get_bot(rt, principal.workspace_id, bot_id)
    if bot.status in (BotStatus.DISCONNECTED, BotStatus.TOKEN_REVOKED):
        raise errors.Conflict(f"bot {bot_id} is {bot.status.value}: reconnect it first")
    now = rt.clock()
    session_id = f"cs_{secrets.token_hex(8)}"
    token = secrets.token_urlsafe(TOKEN_BYTES)
    async with rt.db.transaction() as conn:
        cancelled = await store.cancel_open_sessions(
            conn, workspace_id=principal.workspace_id, bot_id=bot_id
        )
        await store.add_session(
            conn,
            {
                "id": session_id,
                "workspace_id": principal.workspace_id,
                "bot_id": bot_id,
                "token": token,
                "state": SessionState.WAITING_PRIVATE.value,
                "topic": topic,
                "created_at": now,
                "expires_at": now + timedelta(seconds=rt.settings.connect_session_ttl_seconds),
            },
        )
        await audit.record(
            conn,
            action="connect_session.created",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            bot_id=bot_id,
            detail={"session_id": session_id, "cancelled": cancelled},
        )
    log.info("connect_session.created", session_id=session_id, bot_id=bot_id)
    return await get_session(rt, principal.workspace_id, session_id)


async def get_session(rt: Runtime, workspace_id: str, session_id: str) -> SessionView:
    async with rt.db.engine.connect() as conn:
        found = await store.session(conn, session_id, workspace_id=workspace_id)
        if found is None:
            raise errors.NotFound(f"no connect session {session_id}")
        connection = (
            None
            if found.connection_id is None
            else await store.connection(conn, found.connection_id)
        )
    bot = await bots_service.get_bot(rt, workspace_id, found.bot_id)
    state = rules.effective_state(found.state, found.expires_at, rt.clock())
    usable = state is SessionState.WAITING_PRIVATE and found.token is not None
    return SessionView(
        session=_with_state(found, state),
        bot_username=bot.username,
        links=links_for(bot.username, found.token) if usable and found.token else None,
        connection=connection,
    )


async def reset_group(rt: Runtime, principal: Principal, session_id: str) -> SessionView:
    """Restart phase 2 from now (a new window), keeping the user verified in phase 1."""
    now = rt.clock()
    async with rt.db.transaction() as conn:
        found = await store.session(conn, session_id, workspace_id=principal.workspace_id)
        if found is None:
            raise errors.NotFound(f"no connect session {session_id}")
        if found.user is None or found.state is SessionState.CANCELLED:
            raise errors.Conflict(
                "phase 2 can restart only after a user has verified with /start in phase 1"
                if found.user is None
                else "this session was replaced by a newer one"
            )
        await store.change_session(
            conn,
            session_id,
            state=SessionState.WAITING_GROUP.value,
            group_started_at=now,
            expires_at=now + timedelta(seconds=rt.settings.connect_session_ttl_seconds),
            connection_id=None,
        )
        await audit.record(
            conn,
            action="connect_session.group_reset",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            bot_id=found.bot_id,
            detail={"session_id": session_id},
        )
    return await get_session(rt, principal.workspace_id, session_id)


def _with_state(session: ConnectSession, state: SessionState) -> ConnectSession:
    if state is session.state:
        return session
    return replace(session, state=state, token=None)


# --- connections ---------------------------------------------------------------------------


async def list_connections(rt: Runtime, workspace_id: str) -> list[Connection]:
    async with rt.db.engine.connect() as conn:
        return await store.connections_of_workspace(conn, workspace_id)


async def get_connection(rt: Runtime, workspace_id: str, connection_id: str) -> Connection:
    async with rt.db.engine.connect() as conn:
        found = await store.connection(conn, connection_id, workspace_id=workspace_id)
    if found is None:
        raise errors.NotFound(f"no connection {connection_id}")
    return found


async def connection_on(conn: AsyncConnection, connection_id: str) -> Connection | None:
    """A connection not deleted, read on the caller's connection (e.g. a job's)."""
    return await store.connection(conn, connection_id)


async def delete_connection(rt: Runtime, principal: Principal, connection_id: str) -> None:
    """Unlink a group: no more alerts go there. The bot stays in the group."""
    now = rt.clock()
    async with rt.db.transaction() as conn:
        found = await store.connection(conn, connection_id, workspace_id=principal.workspace_id)
        if found is None:
            raise errors.NotFound(f"no connection {connection_id}")
        await store.change_connection(conn, connection_id, deleted_at=now, updated_at=now)
        await audit.record(
            conn,
            action="group.disconnected",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            bot_id=found.bot_id,
            detail={"connection_id": connection_id, "chat_id": found.chat_id},
        )


# --- notifications -------------------------------------------------------------------------


async def notify(
    rt: Runtime,
    principal: Principal,
    *,
    connection_id: str,
    text: str,
    parse_mode: str | None,
    idempotency_key: str | None,
) -> tuple[Notification, bool]:
    """Queue an alert to a connection; (notification, created). A repeated idempotency key
    returns the first notification and queues nothing."""
    try:
        return await _queue_notification(
            rt,
            principal,
            connection_id=connection_id,
            text=text,
            parse_mode=parse_mode,
            idempotency_key=idempotency_key,
        )
    except IntegrityError:
        # Two requests with one key raced past the lookup: the loser reads the winner.
        if idempotency_key is None:
            raise
        async with rt.db.engine.connect() as conn:
            earlier = await store.notification_by_key(conn, principal.workspace_id, idempotency_key)
        if earlier is None:
            raise
        return earlier, False


async def _queue_notification(
    rt: Runtime,
    principal: Principal,
    *,
    connection_id: str,
    text: str,
    parse_mode: str | None,
    idempotency_key: str | None,
) -> tuple[Notification, bool]:
    # Checked before the write transaction, which on SQLite holds the one writer lock that
    # every API call and job shares: on bench/alerts.py, reads inside it had the worker's
    # transactions queueing ~70 ms behind a burst of alerts. Each race this opens ends as it
    # would a moment later: a key reused at once meets the unique index (see `notify`), and
    # a connection deleted or kicked meanwhile fails the alert at its send.
    async with rt.db.engine.connect() as conn:
        if idempotency_key is not None:
            earlier = await store.notification_by_key(conn, principal.workspace_id, idempotency_key)
            if earlier is not None:
                return earlier, False
        target = await store.connection(conn, connection_id, workspace_id=principal.workspace_id)
    if target is None:
        raise errors.NotFound(f"no connection {connection_id}")
    if target.status is not ConnectionStatus.ACTIVE:
        raise errors.Conflict(
            f"connection {connection_id} is {target.status.value}: "
            f"{target.status_reason or 'alerts cannot be delivered'}"
        )
    now = rt.clock()
    created = Notification(
        id=f"ntf_{secrets.token_hex(8)}",
        workspace_id=principal.workspace_id,
        connection_id=connection_id,
        idempotency_key=idempotency_key,
        text=text,
        parse_mode=parse_mode,
        parts=tuple(rules.split_text(text)),
        status=NotificationStatus.QUEUED,
        message_ids=(),
        error=None,
        created_at=now,
        updated_at=now,
        sent_at=None,
    )
    async with rt.db.transaction() as conn:
        await store.add_notification(conn, created)
        await delivery.enqueue_notification(rt, conn, created, target)
    return created, True


async def get_notification(rt: Runtime, workspace_id: str, notification_id: str) -> Notification:
    async with rt.db.engine.connect() as conn:
        found = await store.notification(conn, notification_id, workspace_id=workspace_id)
    if found is None:
        raise errors.NotFound(f"no notification {notification_id}")
    return found


async def list_notifications(
    rt: Runtime, workspace_id: str, connection_id: str, *, before: str | None, limit: int
) -> list[Notification]:
    """A connection's alerts, newest first; `before` names the last one of the previous page."""
    async with rt.db.engine.connect() as conn:
        target = await store.connection(conn, connection_id, workspace_id=workspace_id)
        if target is None:
            raise errors.NotFound(f"no connection {connection_id}")
        cursor = None
        if before is not None:
            cursor = await store.notification(conn, before, workspace_id=workspace_id)
            if cursor is None or cursor.connection_id != connection_id:
                raise errors.InvalidInput(f"no notification {before} of this connection")
        return await store.notifications_of_connection(
            conn, connection_id, before=cursor, limit=limit
        )
