"""Processing stored updates: parse them with aiogram, record chats and senders, dispatch.

Updates are processed in batches (the updates queue's worker runs many process_update jobs
per transaction): their rows are read and parsed first (`load`), then, in the transaction,
one write of their chats and senders and each domain handler (groups → support → conversations, added by later issues) in a fixed order,
given the whole batch in the order its updates must be handled. All of it runs inside the
jobs' transaction, so the effects are written once, with the jobs' end.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from tgrelay.db import dialects, tables
from tgrelay.db.engine import Database
from tgrelay.queue.retry import PermanentFailure
from tgrelay.telegram.updates import UpdateKind, classify

if TYPE_CHECKING:
    from aiogram.types import Chat, Update, User


@dataclass(frozen=True, kw_only=True)
class ProcessedUpdate:
    """An update as domain handlers see it: typed, classified, with its chat and sender."""

    row_id: int  # updates.id
    bot_id: int
    update_id: int
    received_at: datetime  # when it was stored: the bot's holder then is its owner
    kind: UpdateKind
    update: Update
    raw: dict[str, Any]  # the same update exactly as Telegram sent it
    chat: Chat | None
    sender: User | None


UpdateHandler = Callable[[AsyncConnection, ProcessedUpdate], Awaitable[None]]
# A domain's handler of a batch: the updates in the order they must be handled.
UpdatesHandler = Callable[[AsyncConnection, Sequence[ProcessedUpdate]], Awaitable[None]]


def each(handler: UpdateHandler) -> UpdatesHandler:
    """A handler of one update, run for each update of a batch in turn."""

    async def handle(conn: AsyncConnection, batch: Sequence[ProcessedUpdate]) -> None:
        for processed in batch:
            await handler(conn, processed)

    return handle


def interpret(bot_id: int, payload: str, *, row_id: int, received_at: datetime) -> ProcessedUpdate:
    """Typed view of a raw update; an update aiogram cannot parse will never process."""
    from aiogram.types import Chat, Update, User  # loaded at start-up (telegram.client.load)

    try:
        update = Update.model_validate_json(payload)
    except ValidationError as exc:
        raise PermanentFailure(f"not a valid Telegram Update: {exc.error_count()} errors") from None
    raw = orjson.loads(payload)
    kind = classify(dict.fromkeys(update.model_fields_set, True))
    event: Any = getattr(update, kind.value, None) if kind is not UpdateKind.UNKNOWN else None
    chat = getattr(event, "chat", None)
    if chat is None and kind is UpdateKind.CALLBACK_QUERY and event.message is not None:
        chat = event.message.chat
    sender = getattr(event, "from_user", None) or getattr(event, "user", None)
    return ProcessedUpdate(
        row_id=row_id,
        bot_id=bot_id,
        update_id=update.update_id,
        received_at=received_at,
        kind=kind,
        update=update,
        raw=raw,
        chat=chat if isinstance(chat, Chat) else None,
        sender=sender if isinstance(sender, User) else None,
    )


async def load(db: Database, update_row_ids: Sequence[int]) -> list[ProcessedUpdate]:
    """Read and parse stored updates, in this order, outside any write transaction.

    Parsing is most of an update's processing; done here, it keeps SQLite's write lock free
    (stored updates never change, so reading them ahead of the transaction is safe).
    """
    async with db.engine.connect() as conn:
        rows = {
            row.id: row
            for row in await conn.execute(_UPDATE_ROWS, {"row_ids": list(update_row_ids)})
        }
    missing = [row_id for row_id in update_row_ids if row_id not in rows]
    if missing:
        raise PermanentFailure(f"update rows {missing} no longer exist")
    return [
        interpret(rows[i].bot_id, rows[i].payload, row_id=i, received_at=rows[i].received_at)
        for i in update_row_ids
    ]


async def handle_many(
    conn: AsyncConnection,
    batch: Sequence[ProcessedUpdate],
    *,
    handlers: Sequence[UpdatesHandler],
    now: datetime,
) -> None:
    """Record the batch's chats and senders, then run each domain handler, in the caller's
    transaction."""
    await _record_participants(conn, batch, now=now)
    for handler in handlers:
        await handler(conn, batch)


_UPDATE_ROWS = select(
    tables.updates.c.id,
    tables.updates.c.bot_id,
    tables.updates.c.payload,
    tables.updates.c.received_at,
).where(tables.updates.c.id.in_(bindparam("row_ids", expanding=True)))


async def _record_participants(
    conn: AsyncConnection, batch: Sequence[ProcessedUpdate], *, now: datetime
) -> None:
    """Upsert each chat and sender as last seen by its bot: one statement per table."""
    chats: dict[tuple[int, int], dict[str, object]] = {}
    users: dict[tuple[int, int], dict[str, object]] = {}
    for processed in batch:  # later updates overwrite earlier ones: last seen wins
        if (chat := processed.chat) is not None:
            chats[(processed.bot_id, chat.id)] = {
                "bot_id": processed.bot_id,
                "chat_id": chat.id,
                "type": chat.type,
                "title": chat.title,
                "username": chat.username,
                "updated_at": now,
            }
        if (user := processed.sender) is not None:
            users[(processed.bot_id, user.id)] = {
                "bot_id": processed.bot_id,
                "user_id": user.id,
                "is_bot": user.is_bot,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "username": user.username,
                "language_code": user.language_code,
                "updated_at": now,
            }
    dialect = conn.dialect.name
    if chats:
        # In key order: two transactions upserting the same rows take their locks alike.
        await conn.execute(
            _upsert(dialect, tables.telegram_chats), [chats[k] for k in sorted(chats)]
        )
    if users:
        await conn.execute(
            _upsert(dialect, tables.telegram_users), [users[k] for k in sorted(users)]
        )


@functools.cache
def _upsert(dialect: str, table: Table) -> Insert:
    """INSERT … ON CONFLICT (primary key) DO UPDATE of every other column; built once."""
    statement = dialects.upsert(dialect, table)
    key = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(
        index_elements=key,
        set_={
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column.name not in key
        },
    )
