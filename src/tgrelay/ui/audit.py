"""The web UI's audit trail: the workspace's rows, newest first, filtered by action, bot and
time, a page at a time (the same rows as `GET /v1/audit`)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tgrelay import audit, errors
from tgrelay.bots import service as bots
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)

ROWS_PER_PAGE = 50
# The actions the filter suggests (every one tgrelay writes with a workspace); the field takes
# any other name too.
KNOWN_ACTIONS = [
    "bot.connected",
    "bot.disconnected",
    "bot.status_changed",
    "bot.token_rotated",
    "bot.secret_rotated",
    "intake.rejected",
    "connect_session.created",
    "connect_session.verified",
    "connect_session.refused",
    "connect_session.group_reset",
    "group.connected",
    "group.disconnected",
    "group.addition_ignored",
    "group.migrated",
    "group.status_changed",
    "endpoint.created",
    "endpoint.updated",
    "endpoint.secret_rotated",
    "endpoint.replayed",
    "endpoint.disabled",
    "endpoint.deleted",
    "api_key.created",
    "api_key.revoked",
]


@router.get("/ui/audit")
async def audit_page(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    action: str = "",
    bot: str = "",
    until: str = "",
    before: int | None = None,
) -> Response:
    """`until` is the form's UTC time (datetime-local); `before` the row id of the older link."""
    status_code, error = 200, None
    found: list[audit.Recorded] = []
    try:
        bot_id = _bot_id(bot)
        cursor = before if before is not None else (audit.cursor(until) if until else None)
        found = await audit.entries(
            rt.db,
            principal.workspace_id,
            action=action.strip() or None,
            bot_id=bot_id,
            before=cursor,
            limit=ROWS_PER_PAGE,
        )
    except errors.InvalidInput as exc:
        status_code, error = 422, exc.message
    filters = {"action": action, "bot": bot, "until": until}
    older = None
    if len(found) == ROWS_PER_PAGE:
        kept = {name: value for name, value in filters.items() if value and name != "until"}
        older = f"/ui/audit?{urlencode(kept | {'before': found[-1].id})}"
    workspace_bots = await bots.list_bots(rt, principal.workspace_id)
    return pages.render(
        request,
        "audit.html",
        status_code=status_code,
        entries=found,
        usernames={b.id: b.username for b in workspace_bots},
        actions=KNOWN_ACTIONS,
        form=filters,
        older=older,
        error=error,
    )


def _bot_id(field: str) -> int | None:
    text = field.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise errors.InvalidInput(f"bot must be a bot id, not {field!r}")
    return int(text)
