"""The audit trail: one row per security-relevant fact, written in the caller's transaction,
and read back per workspace, newest first.

Rows about a bot before any workspace could be told (`intake.rejected` for a bot id we do
not serve) carry no workspace, so no workspace's reader sees them. Rejected webhook requests
are tallied (`count`): one row per bot, reason, source address and minute, its count raised
by each flush of the intake's tally (inbox.rejections), so a flood cannot grow the table
by a row per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.dialects import postgresql, sqlite
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
    count: int = 1  # occurrences the row stands for (a tally of rejected requests)
    # Set on tallied rows: entries with the same key add their counts into one row.
    aggregate_key: str | None = None


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


COLUMNS = (
    "workspace_id",
    "bot_id",
    "action",
    "actor",
    "detail",
    "remote_addr",
    "created_at",
    "count",
    "aggregate_key",
)
COUNT_COLUMN = "count"
AGGREGATE_KEY = "aggregate_key"


async def record_many(conn: AsyncConnection, entries: Sequence[Entry]) -> None:
    """Append audit rows; a tallied entry whose row exists adds its count to that row."""
    merged = merge(entries)
    plain = [values(e) for e in merged if e.aggregate_key is None]
    tallied = [values(e) for e in merged if e.aggregate_key is not None]
    if plain:
        await conn.execute(insert(tables.audit_log), plain)
    if tallied:
        log = tables.audit_log
        upsert = postgresql.insert(log) if conn.dialect.name == "postgresql" else sqlite.insert(log)
        statement = upsert.on_conflict_do_update(
            index_elements=[AGGREGATE_KEY],
            set_={COUNT_COLUMN: log.c[COUNT_COLUMN] + upsert.excluded[COUNT_COLUMN]},
        )
        await conn.execute(statement, tallied)


def merge(entries: Sequence[Entry]) -> list[Entry]:
    """The entries with each aggregate key once, counts summed, in first-seen order.

    PostgreSQL refuses an INSERT … ON CONFLICT DO UPDATE that meets one key twice, and two
    flushes of a tally can land in one commit.
    """
    if all(e.aggregate_key is None for e in entries):
        return list(entries)
    result: list[Entry] = []
    seen: dict[str, int] = {}
    for entry in entries:
        key = entry.aggregate_key
        if key is None:
            result.append(entry)
        elif key in seen:
            earlier = result[seen[key]]
            result[seen[key]] = replace(earlier, count=earlier.count + entry.count)
        else:
            seen[key] = len(result)
            result.append(entry)
    return result


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
        "count": entry.count,
        "aggregate_key": entry.aggregate_key,
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
    count: int  # occurrences: 1, or rejected requests tallied over the row's minute

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "bot_id": self.bot_id,
            "detail": dict(self.detail),
            "remote_addr": self.remote_addr,
            "count": self.count,
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
            count=row._mapping["count"],  # row.count is the tuple method
        )
        for row in rows
    ]
