"""The web UI's alerts page of one connection: send an alert, follow each one from queued
to sent or failed (and why).

The page works without JavaScript (reload to see progress); `notifications.js` polls the
JSON route below while an alert is queued and updates the rows in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from tgrelay import errors
from tgrelay.groups import service as groups
from tgrelay.groups.models import Notification
from tgrelay.runtime import Runtime
from tgrelay.ui import filters, pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)

NOTIFICATIONS_PER_PAGE = 50
# The API's limit on an alert's text (tgrelay.groups.api); longer ones are sent in parts.
TEXT_MAX_LENGTH = 65_536


def live_status(notification: Notification, now: datetime) -> dict[str, Any]:
    """What the page's script needs to redraw one row."""
    status, sent = notification.status, notification.sent_at
    return {
        "id": notification.id,
        "status": status.value,
        "words": filters.words(status),
        "tone": filters.tone(status),
        "error": notification.error,
        "sent": None if sent is None else filters.relative(sent, now),
        "sent_exact": None if sent is None else filters.exact(sent),
        "sent_iso": None if sent is None else filters.iso(sent),
    }


@router.get("/ui/connections/{connection_id}/notifications")
async def notifications_page(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    connection_id: str,
    before: str | None = None,
    sent: str | None = None,
) -> Response:
    notice = None if sent is None else f"Alert {sent} queued"
    return await _notifications(
        request, rt, principal.workspace_id, connection_id, before=before, notice=notice
    )


@router.post("/ui/connections/{connection_id}/notifications")
async def send_alert(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    connection_id: str,
    text: Annotated[str, Form(max_length=TEXT_MAX_LENGTH)] = "",
) -> Response:
    try:
        if not text.strip():
            raise errors.InvalidInput("the alert has no text")
        notification, _ = await groups.notify(
            rt,
            principal,
            connection_id=connection_id,
            text=text,
            parse_mode=None,
            idempotency_key=None,
        )
    except (errors.NotFound, errors.Conflict, errors.InvalidInput) as exc:
        status = {errors.NotFound: 404, errors.Conflict: 409}.get(type(exc), 422)
        return await _notifications(
            request,
            rt,
            principal.workspace_id,
            connection_id,
            status_code=status,
            error=f"No alert sent: {exc.message}",
        )
    return RedirectResponse(
        f"/ui/connections/{connection_id}/notifications?sent={notification.id}", status_code=303
    )


@router.get("/ui/connections/{connection_id}/notifications/status")
async def notifications_status(
    rt: pages.Rt, principal: SignedIn, connection_id: str, before: str | None = None
) -> JSONResponse:
    """What the alerts page polls while one of its alerts is queued."""
    try:
        found = await groups.list_notifications(
            rt, principal.workspace_id, connection_id, before=before, limit=NOTIFICATIONS_PER_PAGE
        )
    except (errors.NotFound, errors.InvalidInput) as exc:
        return JSONResponse({"error": exc.message}, status_code=404)
    now = rt.clock()
    return JSONResponse({"notifications": [live_status(n, now) for n in found]})


async def _notifications(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    connection_id: str,
    *,
    before: str | None = None,
    status_code: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    try:
        connection = await groups.get_connection(rt, workspace_id, connection_id)
        found = await groups.list_notifications(
            rt, workspace_id, connection_id, before=before, limit=NOTIFICATIONS_PER_PAGE
        )
    except (errors.NotFound, errors.InvalidInput) as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    older = None
    if len(found) == NOTIFICATIONS_PER_PAGE:
        older = f"?{urlencode({'before': found[-1].id})}"
    return pages.render(
        request,
        "notifications.html",
        status_code=status_code,
        connection=connection,
        notifications=found,
        status_url=f"/ui/connections/{connection_id}/notifications/status"
        + ("" if before is None else f"?{urlencode({'before': before})}"),
        older=older,
        notice=notice,
        error=error,
    )
