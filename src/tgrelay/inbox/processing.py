"""Processing stored updates, before dispatch: read and check them, record chats and senders.

Updates are processed in batches (the updates queue's worker runs many process_update jobs
per transaction): their rows are read and their essentials checked first (`load`;
telegram/essentials.py; aiogram parses an update only when a domain asks for its typed
view), outside the transaction; in it, one write of their chats and senders
(`record_participants`), then `inbox.dispatch` hands them to the domain handlers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import orjson
from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import tables
from tgrelay.db.bulk_inserts import BulkInsert
from tgrelay.db.engine import Database
from tgrelay.inbox.models import ProcessedUpdate, unprocessable
from tgrelay.queue.retry import PermanentFailure
from tgrelay.telegram import essentials
from tgrelay.telegram.updates import classify


def interpret(
    bot_id: int,
    payload: str,
    *,
    row_id: int,
    received_at: datetime,
    trace_id: str | None = None,
) -> ProcessedUpdate:
    """The update as handlers see it; one whose essentials are malformed will never process."""
    raw = orjson.loads(payload)
    kind = classify(raw)
    try:
        chat, sender = essentials.chat_and_sender(raw, kind)
    except essentials.Malformed as exc:
        raise unprocessable(exc.errors) from None
    return ProcessedUpdate(
        row_id=row_id,
        bot_id=bot_id,
        update_id=raw["update_id"],
        received_at=received_at,
        kind=kind,
        raw=raw,
        chat=chat,
        sender=sender,
        trace_id=trace_id,
    )


async def load(db: Database, update_row_ids: Sequence[int]) -> list[ProcessedUpdate]:
    """Read and check stored updates, in this order, outside any write transaction.

    Reading and checking them is a large share of an update's processing; done here, it
    keeps SQLite's write lock free (stored updates never change, so reading them ahead of
    the transaction is safe).
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
        interpret(
            rows[i].bot_id,
            rows[i].payload,
            row_id=i,
            received_at=rows[i].received_at,
            trace_id=rows[i].trace_id,
        )
        for i in update_row_ids
    ]


_UPDATE_ROWS = select(
    tables.updates.c.id,
    tables.updates.c.bot_id,
    tables.updates.c.payload,
    tables.updates.c.received_at,
    tables.updates.c.trace_id,
).where(tables.updates.c.id.in_(bindparam("row_ids", expanding=True)))


async def record_participants(
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
    # In key order: two transactions upserting the same rows take their locks alike.
    await _UPSERT_CHATS(conn, [chats[k] for k in sorted(chats)])
    await _UPSERT_USERS(conn, [users[k] for k in sorted(users)])


def _upsert(table: Table) -> BulkInsert:
    """INSERT … ON CONFLICT (primary key) DO UPDATE of every other column."""
    key = [column.name for column in table.primary_key.columns]
    return BulkInsert(table, [column.name for column in table.columns], replace_conflicts_on=key)


_UPSERT_CHATS = _upsert(tables.telegram_chats)
_UPSERT_USERS = _upsert(tables.telegram_users)
