"""Request authentication: `Authorization: Bearer <api key>` names the calling workspace."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tgrelay import errors
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import service
from tgrelay.workspaces.models import Principal


async def principal(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Principal:
    """FastAPI dependency: the workspace behind the request's API key, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise errors.AuthenticationFailed()
    return await service.authenticate(rt.db, presented.strip())


CurrentPrincipal = Annotated[Principal, Depends(principal)]
