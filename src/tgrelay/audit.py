"""The audit trail: one row per security-relevant fact, written in the caller's transaction,
and read back per workspace, newest first.

Rows about a bot before any workspace could be told (`intake.rejected`: a push with a
wrong secret) carry no workspace, so no workspace's reader sees them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import crypto, errors
from tgrelay.db import tables
from tgrelay.db.engine import Database

SYSTEM = "system"
TELEGRAM = "telegram"


@dataclass(frozen=True, kw_only=True)
class Entry:
    action: str  # stable name, e.g. "intake.rejected", "bot.status_changed"
    actor: str  # "api_key:tgr_…", "system" or "telegram"
    at: datetime
    workspace_id: str | None = None
    bot_id: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    remote_addr: str | None = None


async def record(
    conn: AsyncConnection,
    *,
    action: str,
    actor: str,
    now: datetime,
    workspace_id: str | None = None,
    bot_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
    remote_addr: str | None = None,
) -> None:
    """Append one audit row."""
    entry = Entry(
        action=action,
        actor=actor,
        at=now,
        workspace_id=workspace_id,
        bot_id=bot_id,
        detail=detail or {},
        remote_addr=remote_addr,
    )
    await record_many(conn, [entry])


COLUMNS = ("workspace_id", "bot_id", "action", "actor", "detail", "remote_addr", "created_at")


async def record_many(conn: AsyncConnection, entries: Sequence[Entry]) -> None:
    """Append audit rows in one statement."""
    if entries:
        await conn.execute(insert(tables.audit_log), [values(e) for e in entries])


def values(entry: Entry) -> dict[str, Any]:
    """The audit_log row of an entry; any bot token that strays into a detail is redacted."""
    detail = orjson.dumps(dict(entry.detail), default=str).decode()
    return {
        "workspace_id": entry.workspace_id,
        "bot_id": entry.bot_id,
        "action": entry.action,
        "actor": entry.actor,
        "detail": crypto.redact_tokens(detail),
        "remote_addr": entry.remote_addr,
        "created_at": entry.at,
    }


# --- reading the trail ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """One stored audit row, as a workspace may read it."""

    id: int  # increases with every row written: pass it as `before` for the next page
    action: str
    actor: str
    at: datetime
    bot_id: int | None
    detail: Mapping[str, Any]
    remote_addr: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "bot_id": self.bot_id,
            "detail": dict(self.detail),
            "remote_addr": self.remote_addr,
        }


Cursor = int | datetime


def cursor(before: str) -> Cursor:
    """Where a page ends: a row id (older rows follow) or an ISO 8601 instant (rows written
    before it; UTC without an offset)."""
    text = before.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise errors.InvalidInput(
            f"before must be a row id or an ISO 8601 time like 2026-01-31T09:00, not {before!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def entries(
    db: Database,
    workspace_id: str,
    *,
    action: str | None = None,
    bot_id: int | None = None,
    before: Cursor | None = None,
    limit: int,
) -> list[Recorded]:
    """A workspace's rows, newest first, filtered by action, bot and where the page ends."""
    log = tables.audit_log
    query = select(log).where(log.c.workspace_id == workspace_id)
    if action is not None:
        query = query.where(log.c.action == action)
    if bot_id is not None:
        query = query.where(log.c.bot_id == bot_id)
    if isinstance(before, int):
        query = query.where(log.c.id < before)
    elif before is not None:
        query = query.where(log.c.created_at < before)
    query = query.order_by(log.c.id.desc()).limit(limit)
    async with db.engine.connect() as conn:
        rows = await conn.execute(query)
    return [
        Recorded(
            id=row.id,
            action=row.action,
            actor=row.actor,
            at=row.created_at,
            bot_id=row.bot_id,
            detail=orjson.loads(row.detail),
            remote_addr=row.remote_addr,
        )
        for row in rows
    ]
