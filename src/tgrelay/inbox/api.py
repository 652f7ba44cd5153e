"""`/v1/bots/{bot_id}/updates`: what was received for a bot and how far processing got."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict

from tgrelay import errors
from tgrelay.bots import service as bots_service
from tgrelay.inbox import service
from tgrelay.inbox.models import UpdateSource, UpdateStatus
from tgrelay.inbox.writer import UPDATES_QUEUE
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces.service import AdminPrincipal, CurrentPrincipal

router = APIRouter(prefix="/v1/bots/{bot_id}/updates", tags=["updates"])


class UpdateView(BaseModel):
    model_config = ConfigDict(frozen=True)

    update_id: int
    kind: str
    chat_id: int | None
    received_at: datetime
    source: UpdateSource
    status: UpdateStatus
    last_error: str | None


class UpdatePage(BaseModel):
    updates: list[UpdateView]
    # Pass as `after` to get the next page; null when this page is the last one so far.
    next_after: int | None


@router.get("", response_model=UpdatePage)
async def list_updates(
    bot_id: int,
    principal: CurrentPrincipal,
    rt: Annotated[Runtime, Depends(runtime)],
    after: Annotated[int | None, Query(description="only update_ids greater than this")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    status: UpdateStatus | None = None,
) -> UpdatePage:
    """Stored updates of a bot in ascending update_id order, those received since this
    workspace connected it (an earlier workspace's are not shown)."""
    bot = await bots_service.get_bot(rt, principal.workspace_id, bot_id)
    stored = await service.list_updates(
        rt.db, bot_id, after=after, limit=limit, status=status, since=bot.connected_since
    )
    views = [UpdateView.model_validate(u, from_attributes=True) for u in stored]
    return UpdatePage(
        updates=views, next_after=views[-1].update_id if len(views) == limit else None
    )


@router.post("/{update_id}/retry", response_model=UpdateView)
async def retry_update(
    bot_id: int,
    update_id: int,
    principal: AdminPrincipal,
    rt: Annotated[Runtime, Depends(runtime)],
) -> UpdateView:
    """Re-run the processing of a dead update."""
    bot = await bots_service.get_bot(rt, principal.workspace_id, bot_id)
    stored = await service.retry_dead(
        rt.db, bot_id, update_id, since=bot.connected_since, now=rt.clock()
    )
    if stored is None:
        raise errors.NotFound(f"no update {update_id} for bot {bot_id}")
    rt.notify_queue(UPDATES_QUEUE)
    return UpdateView.model_validate(stored, from_attributes=True)
