"""The web UI's page of a bot's updates: newest first, filtered by status, a dead update's
error and a button that runs its processing again."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors
from tgrelay.bots import service as bots
from tgrelay.inbox import service as inbox
from tgrelay.inbox.models import UpdateStatus
from tgrelay.inbox.writer import UPDATES_QUEUE
from tgrelay.runtime import Runtime
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)

UPDATES_PER_PAGE = 50
# The table's tabs: a status filter and its label; "" lists every update.
TABS = [
    ("", "All"),
    (UpdateStatus.PENDING.value, "Pending"),
    (UpdateStatus.FAILED.value, "Failed"),
    (UpdateStatus.DEAD.value, "Dead"),
    (UpdateStatus.PROCESSED.value, "Processed"),
]


@router.get("/ui/bots/{bot_id}/updates")
async def updates_page(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    bot_id: int,
    status: UpdateStatus | None = None,
    before: int | None = None,
    retried: int | None = None,
) -> Response:
    notice = None if retried is None else f"Update {retried} queued to be processed again"
    return await _updates(
        request, rt, principal.workspace_id, bot_id, status=status, before=before, notice=notice
    )


@router.post("/ui/bots/{bot_id}/updates/{update_id}/retry")
async def retry_update(
    request: Request, rt: pages.Rt, principal: SignedIn, bot_id: int, update_id: int
) -> Response:
    try:
        bot = await bots.get_bot(rt, principal.workspace_id, bot_id)  # others' are absent
        again = await inbox.retry_dead(
            rt.db, bot_id, update_id, since=bot.connected_since, now=rt.clock()
        )
        if again is None:
            raise errors.NotFound(f"no update {update_id} for bot {bot_id}")
    except (errors.NotFound, errors.Conflict) as exc:
        return await _updates(
            request,
            rt,
            principal.workspace_id,
            bot_id,
            status_code=404 if isinstance(exc, errors.NotFound) else 409,
            error=f"Not retried: {exc.message}",
        )
    rt.notify_queue(UPDATES_QUEUE)
    return RedirectResponse(f"/ui/bots/{bot_id}/updates?retried={update_id}", status_code=303)


async def _updates(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    bot_id: int,
    *,
    status: UpdateStatus | None = None,
    before: int | None = None,
    status_code: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    try:
        bot = await bots.get_bot(rt, workspace_id, bot_id)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    found = await inbox.list_updates(
        rt.db,
        bot_id,
        after=None,
        before=before,
        limit=UPDATES_PER_PAGE,
        status=status,
        since=bot.connected_since,
        newest_first=True,
    )
    filtered = {} if status is None else {"status": status.value}
    older = None
    if len(found) == UPDATES_PER_PAGE:
        older = f"/ui/bots/{bot_id}/updates?{urlencode(filtered | {'before': found[-1].update_id})}"
    return pages.render(
        request,
        "updates.html",
        status_code=status_code,
        bot=bot,
        updates=found,
        tabs=TABS,
        tab=filtered.get("status", ""),
        older=older,
        notice=notice,
        error=error,
    )
