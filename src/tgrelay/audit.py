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


async def record_many(conn: AsyncConnection, entries: Sequence[Entry]) -> None:
    """Append audit rows in one statement; any bot token that strays into a detail is redacted."""
    if not entries:
        return
    await conn.execute(
        insert(tables.audit_log),
        [
            {
                "workspace_id": e.workspace_id,
                "bot_id": e.bot_id,
                "action": e.action,
                "actor": e.actor,
                "detail": crypto.redact_tokens(orjson.dumps(dict(e.detail), default=str).decode()),
                "remote_addr": e.remote_addr,
                "created_at": e.at,
            }
            for e in entries
        ],
    )
