"""Processing a stored update: parse it with aiogram, record its chat and sender, dispatch.

Domain handlers (groups → support → conversations, added by later issues) run in a fixed
order inside the job's transaction, so their effects are written once with the job's end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import dialects, tables
from tgrelay.queue.retry import PermanentFailure
from tgrelay.telegram.updates import UpdateKind, classify

if TYPE_CHECKING:
    from aiogram.types import Chat, Update, User


@dataclass(frozen=True, kw_only=True)
class ProcessedUpdate:
    """An update as domain handlers see it: typed, classified, with its chat and sender."""

    bot_id: int
    update_id: int
    kind: UpdateKind
    update: Update
    raw: dict[str, Any]  # the same update exactly as Telegram sent it
    chat: Chat | None
    sender: User | None


UpdateHandler = Callable[[AsyncConnection, ProcessedUpdate], Awaitable[None]]


def interpret(bot_id: int, payload: str) -> ProcessedUpdate:
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
        bot_id=bot_id,
        update_id=update.update_id,
        kind=kind,
        update=update,
        raw=raw,
        chat=chat if isinstance(chat, Chat) else None,
        sender=sender if isinstance(sender, User) else None,
    )


async def process(
    conn: AsyncConnection,
    *,
    update_row_id: int,
    handlers: Sequence[UpdateHandler],
    now: datetime,
) -> ProcessedUpdate:
    """Run the whole processing of one stored update inside the caller's transaction."""
    row = (
        await conn.execute(
            select(tables.updates.c.bot_id, tables.updates.c.payload).where(
                tables.updates.c.id == update_row_id
            )
        )
    ).one_or_none()
    if row is None:
        raise PermanentFailure(f"update row {update_row_id} no longer exists")
    processed = interpret(row.bot_id, row.payload)
    await _record_participants(conn, processed, now=now)
    for handler in handlers:
        await handler(conn, processed)
    return processed


async def _record_participants(
    conn: AsyncConnection, processed: ProcessedUpdate, *, now: datetime
) -> None:
    """Upsert the chat and the sender as last seen by this bot."""
    if processed.chat is not None:
        chat = processed.chat
        await _upsert(
            conn,
            tables.telegram_chats,
            {"bot_id": processed.bot_id, "chat_id": chat.id},
            {"type": chat.type, "title": chat.title, "username": chat.username, "updated_at": now},
        )
    if processed.sender is not None:
        user = processed.sender
        await _upsert(
            conn,
            tables.telegram_users,
            {"bot_id": processed.bot_id, "user_id": user.id},
            {
                "is_bot": user.is_bot,
                "first_name": user.first_name,
                "last_name": user.last_name,
                "username": user.username,
                "language_code": user.language_code,
                "updated_at": now,
            },
        )


async def _upsert(
    conn: AsyncConnection, table: Table, key: dict[str, object], values: dict[str, object]
) -> None:
    await conn.execute(
        dialects.upsert(conn.dialect.name, table)
        .values(**key, **values)
        .on_conflict_do_update(index_elements=list(key), set_=values)
    )
