"""Records of the inbox: updates as received and how far their processing got."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class UpdateSource(StrEnum):
    WEBHOOK = "webhook"  # pushed by Telegram to /telegram/{bot_id}
    POLLING = "polling"  # fetched by our getUpdates poller


class UpdateStatus(StrEnum):
    PENDING = "pending"  # stored, processing not finished yet
    PROCESSED = "processed"  # its process_update job is done: domain handlers had it
    FAILED = "failed"  # processing failed and waits for a retry
    DEAD = "dead"  # processing exhausted its attempts; re-runnable
    THROTTLED = "throttled"  # its chat was over TGRELAY_INBOUND_CHAT_LIMIT: not handled
    DUPLICATE = "duplicate"  # the same message came before under another update_id


class Disposition(StrEnum):
    """Why a stored update was kept from the domain handlers (updates.disposition)."""

    THROTTLED = "throttled"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, kw_only=True)
class IncomingUpdate:
    """An update accepted at the edge, about to be committed."""

    bot_id: int
    update_id: int
    kind: str
    chat_id: int | None
    source: UpdateSource
    payload: str  # the raw JSON text as received
    received_at: datetime

    @property
    def ordering_key(self) -> str | None:
        """Per-chat order: one chat's updates are processed one at a time, oldest first."""
        return None if self.chat_id is None else f"chat:{self.bot_id}:{self.chat_id}"


@dataclass(frozen=True, kw_only=True)
class StoredUpdate:
    bot_id: int
    update_id: int
    kind: str
    chat_id: int | None
    source: UpdateSource
    received_at: datetime
    status: UpdateStatus
    last_error: str | None
