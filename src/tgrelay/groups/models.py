"""Records and states of the groups domain."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class SessionState(enum.StrEnum):
    WAITING_PRIVATE = "waiting_private"  # phase 1: nobody has sent /start <token> yet
    WAITING_GROUP = "waiting_group"  # phase 2: the verified user must add the bot to a group
    CONNECTED = "connected"  # a connection was made; the session is done
    EXPIRED = "expired"  # the token or the phase-2 window ran out
    CANCELLED = "cancelled"  # replaced by a newer session for the same bot


OPEN_STATES = (SessionState.WAITING_PRIVATE, SessionState.WAITING_GROUP)


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "active"  # alerts are delivered
    BOT_REMOVED = "bot_removed"  # the bot was kicked or left; alerts fail at once
    # The workspace disconnected the bot (or another workspace took it over): alerts fail at
    # once, and connecting the bot again in this workspace makes the connection active.
    SUSPENDED = "suspended"


# Why a connection is suspended (its status_reason), also the error of the alerts it refuses.
BOT_DISCONNECTED = "bot disconnected"


class NotificationStatus(enum.StrEnum):
    QUEUED = "queued"  # waiting for its turn (rate limits, earlier alerts of the connection)
    SENT = "sent"  # every part is in the group; message_ids says which messages
    FAILED = "failed"  # will not be sent; error says why


@dataclass(frozen=True, kw_only=True)
class TelegramUser:
    """Who proved themselves in phase 1 (taken from Telegram's update, never from a browser)."""

    id: int
    first_name: str | None
    username: str | None


@dataclass(frozen=True, kw_only=True)
class ConnectSession:
    id: str
    workspace_id: str
    bot_id: int
    token: str | None  # null once used, replaced or expired
    state: SessionState
    topic: str | None
    created_at: datetime
    expires_at: datetime
    user: TelegramUser | None
    verified_at: datetime | None
    group_started_at: datetime | None
    connection_id: str | None


@dataclass(frozen=True, kw_only=True)
class Connection:
    id: str
    workspace_id: str
    bot_id: int
    chat_id: int
    chat_type: str
    title: str | None
    is_forum: bool
    topic: str | None
    message_thread_id: int | None
    status: ConnectionStatus
    status_reason: str | None
    connected_by_user_id: int | None
    session_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Notification:
    id: str
    workspace_id: str
    connection_id: str
    idempotency_key: str | None
    text: str
    parse_mode: str | None
    parts: tuple[str, ...]
    status: NotificationStatus
    message_ids: tuple[int, ...]
    error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    # Written before the outbox (issue 18), whose send jobs now record each attempt in their
    # own payload; kept for the rows written then.
    parts_attempted: int = 0
