"""`GET /v1/audit`: the workspace's audit trail, newest first, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from tgrelay import audit
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces.service import CurrentPrincipal

router = APIRouter(prefix="/v1/audit", tags=["audit"])

# Actions are dotted lower-case names ("bot.status_changed"); the column holds 64 characters.
ACTION_PATTERN = r"^[a-z_]+(\.[a-z_]+)*$"


class EntryView(BaseModel):
    id: int  # pass as `before` to get the rows written before this one
    action: str
    actor: str  # "api_key:tgr_…", "cli", "system" or "telegram"
    at: datetime
    bot_id: int | None
    detail: dict[str, Any]
    remote_addr: str | None
    # Occurrences the row stands for: 1, or the rejected webhook requests of one bot, reason
    # and source address within the minute starting at `at`.
    count: int


class AuditPage(BaseModel):
    entries: list[EntryView]
    # Pass as `before` to get the next (older) page; null when this page is the last one.
    next_before: int | None


@router.get("", response_model=AuditPage, summary="The workspace's audit trail")
async def list_audit(
    principal: CurrentPrincipal,
    rt: Annotated[Runtime, Depends(runtime)],
    action: Annotated[
        str | None, Query(max_length=64, pattern=ACTION_PATTERN, description="only this action")
    ] = None,
    bot_id: Annotated[int | None, Query(description="only rows about this bot")] = None,
    before: Annotated[
        str | None,
        Query(
            max_length=64,
            description="a row id (from next_before) or an ISO 8601 time: only older rows",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Newest first; only rows of the key's workspace."""
    found = await audit.entries(
        rt.db,
        principal.workspace_id,
        action=action,
        bot_id=bot_id,
        before=None if before is None else audit.cursor(before),
        limit=limit,
    )
    views = [EntryView.model_validate(entry, from_attributes=True) for entry in found]
    return AuditPage(entries=views, next_before=views[-1].id if len(views) == limit else None)
