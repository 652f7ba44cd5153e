"""The audit trail: one row per security-relevant fact, written in the caller's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import crypto
from tgrelay.db import tables

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
