"""Records of the inbox: updates as received, how far their processing got, and the
dispatch contract domain handlers implement (`Inbound` in, the updates consumed out)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import tracing
from tgrelay.bots.models import Holding
from tgrelay.queue.retry import PermanentFailure
from tgrelay.telegram.essentials import ChatSeen, UserSeen
from tgrelay.telegram.updates import UpdateKind

if TYPE_CHECKING:
    from aiogram.types import Update


# The job kind that processes one stored update (its subject is the update's row).
PROCESS_UPDATE = "process_update"


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

    def job_payload(self) -> dict[str, int]:
        """The payload of its process_update job."""
        return {"bot_id": self.bot_id, "update_id": self.update_id}


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


@dataclass(frozen=True, kw_only=True)
class ProcessedUpdate:
    """An update as domain handlers see it: classified, with its chat and sender, its raw
    JSON, and (parsed on first use) aiogram's typed view."""

    row_id: int  # updates.id
    bot_id: int
    update_id: int
    received_at: datetime  # when it was stored: the bot's holder then is its owner
    kind: UpdateKind
    raw: dict[str, Any]  # the same update exactly as Telegram sent it
    chat: ChatSeen | None
    sender: UserSeen | None
    trace_id: str | None = None  # given when it was stored (tgrelay.tracing)

    @functools.cached_property
    def update(self) -> Update:
        """aiogram's typed view; PermanentFailure when aiogram cannot parse the update."""
        from aiogram.types import Update  # loaded at start-up (telegram.client.load)

        try:
            return Update.model_validate(self.raw)
        except ValidationError as exc:
            raise unprocessable(exc.error_count()) from None


def unprocessable(errors: int) -> PermanentFailure:
    return PermanentFailure(f"not a valid Telegram Update: {errors} errors")


@dataclass(frozen=True, kw_only=True)
class Inbound:
    """An update as a domain handler receives it: with the bot and the workspace holding it."""

    processed: ProcessedUpdate
    bot: Holding  # the bot's username and holder, looked up once per batch

    @property
    def workspace_id(self) -> str:
        return self.bot.workspace_id


# A domain's handler of a batch: given the updates no handler before it consumed, in the
# order they must be handled, it acts in the caller's transaction and returns the row ids
# (`ProcessedUpdate.row_id`) of those it consumed; the others go on to the next handler.
HandleBatch = Callable[[AsyncConnection, Sequence[Inbound]], Awaitable[Collection[int]]]
# The same for one update at a time: True when it consumed it.
HandleOne = Callable[[AsyncConnection, Inbound], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class Handler:
    """A domain handler as dispatch runs it (DESIGN: groups → conversations → support)."""

    name: str  # what an inbound event's `consumed_by` says ("groups")
    handle: HandleBatch

    @classmethod
    def each(cls, name: str, handle: HandleOne) -> Handler:
        """A handler of one update, run for each update of a batch in turn."""

        async def handle_batch(conn: AsyncConnection, batch: Sequence[Inbound]) -> set[int]:
            consumed = set()
            for inbound in batch:
                # What the handler enqueues and emits joins this update's trace.
                with tracing.bound(inbound.processed.trace_id):
                    if await handle(conn, inbound):
                        consumed.add(inbound.processed.row_id)
            return consumed

        return cls(name=name, handle=handle_batch)
