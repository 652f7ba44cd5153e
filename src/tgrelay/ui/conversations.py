"""The web UI's conversations pages: active and recent ones newest first, filtered by flow
and status and paged like GET /v1/conversations, and one conversation with its history."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tgrelay import errors
from tgrelay.conversations import history, registry
from tgrelay.conversations.models import Status
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)

CONVERSATIONS_PER_PAGE = 50
STATUSES = [status.value for status in Status]


@router.get("/ui/conversations")
async def conversations_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    workspace_id = principal.workspace_id
    raw = {name: request.query_params.get(name, "").strip() for name in ("flow", "status")}
    before = request.query_params.get("before", "").strip() or None
    query = {name: value for name, value in raw.items() if value}
    context: dict[str, Any] = {
        "flows": [found.newest.name for found in await registry.list_flows(rt, workspace_id)],
        "statuses": STATUSES,
        "form": raw,
        "filtered": bool(query) or before is not None,
    }
    try:
        if raw["status"] and raw["status"] not in STATUSES:
            raise errors.InvalidInput(
                f"unknown status {raw['status']!r}: one of {', '.join(STATUSES)}"
            )
        page = await history.list_conversations(
            rt,
            workspace_id,
            flow=raw["flow"] or None,
            status=Status(raw["status"]) if raw["status"] else None,
            before=before,
            limit=CONVERSATIONS_PER_PAGE,
        )
    except errors.InvalidInput as exc:
        return pages.render(
            request,
            "conversations.html",
            status_code=422,
            error=f"Not filtered: {exc.message}",
            rows=[],
            older=None,
            **context,
        )
    older = None
    if page.next_before is not None:
        older = f"/ui/conversations?{urlencode(query | {'before': page.next_before})}"
    return pages.render(
        request, "conversations.html", rows=page.conversations, older=older, **context
    )


@router.get("/ui/conversations/{conversation_id}")
async def conversation_page(
    request: Request, rt: pages.Rt, principal: SignedIn, conversation_id: str
) -> Response:
    try:
        found = await history.get_conversation(rt, principal.workspace_id, conversation_id)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    return pages.render(
        request,
        "conversation.html",
        c=found.conversation,
        variables=[
            (name, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
            for name, value in sorted(found.variables.items())
        ],
        sensitive=found.sensitive,
        moves=found.history,
    )
