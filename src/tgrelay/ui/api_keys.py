"""The web UI's API keys page: list the workspace's keys, create one (shown once), revoke one.

Revoking the key this browser signed in with ends this session too (its sessions go with it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors, problems
from tgrelay.runtime import Runtime
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn
from tgrelay.workspaces import keys
from tgrelay.workspaces.models import ApiKey, KeyScope

router = APIRouter(include_in_schema=False)
PATH = "/ui/api-keys"


@router.get(PATH)
async def keys_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    return await _page(request, rt, principal.workspace_id)


@router.post(PATH)
async def create_key(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    name: Annotated[str, Form(max_length=keys.NAME_MAX_LENGTH)] = "",
    scope: Annotated[str, Form()] = "",
) -> Response:
    try:
        if scope not in {s.value for s in KeyScope}:
            raise errors.InvalidInput("choose the scope: admin or read")
        key, plaintext = await keys.create(
            rt.db, principal, name=name, scope=KeyScope(scope), now=rt.clock()
        )
    except errors.InvalidInput as exc:
        return await _page(
            request,
            rt,
            principal.workspace_id,
            status_code=422,
            error=f"No key created: {exc.message}",
        )
    # Shown in this response only: nothing stores the plaintext, so a reload cannot show it.
    return await _page(request, rt, principal.workspace_id, created=(key, plaintext))


@router.post(PATH + "/{key_id}/revoke")
async def revoke_key(request: Request, rt: pages.Rt, principal: SignedIn, key_id: str) -> Response:
    try:
        await keys.revoke(rt.db, principal, key_id, now=rt.clock())
    except (errors.NotFound, errors.Conflict) as exc:
        return await _page(
            request,
            rt,
            principal.workspace_id,
            status_code=problems.status_of(exc),
            error=f"Not revoked: {exc.message}",
        )
    return RedirectResponse(f"{PATH}?revoked={key_id}", status_code=303)


async def _page(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    created: tuple[ApiKey, str] | None = None,
) -> Response:
    revoked = request.query_params.get("revoked")
    listed = await keys.list_keys(rt.db, workspace_id)
    return pages.render(
        request,
        "api_keys.html",
        status_code=status_code,
        keys=listed,
        created=created,
        error=error,
        # Named by the redirect; said only when that key is indeed gone from the list.
        notice=f"Revoked {revoked}." if revoked and all(k.id != revoked for k in listed) else None,
    )
