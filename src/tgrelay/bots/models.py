"""Records of connected bots: how each one receives updates and whether that works."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class BotStatus(StrEnum):
    HEALTHY = "healthy"  # the token works and updates reach us the way the mode expects
    # Telegram answers 401: the token was revoked in BotFather.
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 (a status name, not a password)
    WEBHOOK_CONFLICT = "webhook_conflict"  # the registered webhook is not ours; see ConflictKind
    DISCONNECTED = "disconnected"  # the workspace let the bot go; nothing is received


class ConflictKind(StrEnum):
    FOREIGN = "foreign"  # another URL is registered (another service took the bot over)
    EMPTY = "empty"  # no webhook is registered while we expect ours


class BotMode(StrEnum):
    WEBHOOK = "webhook"  # Telegram pushes to {public_url}/telegram/{bot_id}
    POLLING = "polling"  # our poller calls getUpdates (no public endpoint needed)


@dataclass(frozen=True, kw_only=True)
class ConnectedBot:
    """One row of the bots table, as the rest of tgrelay may see it: never the token."""

    id: int  # Telegram's bot id
    workspace_id: str
    username: str
    first_name: str
    token_fingerprint: str  # "123456:…abcd"
    mode: BotMode
    status: BotStatus
    conflict_kind: ConflictKind | None  # set only while status is webhook_conflict
    # Webhook secrets are derived from (bot id, generation); rotation moves to the next one.
    secret_generation: int
    previous_secret_valid_until: datetime | None  # grace end of generation - 1
    webhook_url: str | None  # ours, in webhook mode; None in polling mode
    last_error_message: str | None  # Telegram's last webhook delivery error
    last_error_at: datetime | None
    last_checked_at: datetime | None  # the last health check that reached Telegram
    # Where this workspace's hold on the bot began: updates received earlier are not its own.
    connected_since: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Holding:
    """Who holds a bot, as processing an update needs it (one query per batch)."""

    bot_id: int
    username: str  # without "@"
    workspace_id: str
    # Where this workspace's hold began: updates received earlier are not its own.
    connected_since: datetime


@dataclass(frozen=True, kw_only=True)
class HoldChanged:
    """A workspace began holding a bot again (connect), or stopped (disconnect, take-over)."""

    workspace_id: str
    bot_id: int
    held: bool  # True: the workspace holds the bot now; False: it let it go or lost it
    actor: str  # audit actor of the change
    now: datetime
