"""Request authentication (`Authorization: Bearer <api key>` names the calling workspace) and
the `/v1/api-keys` routes.

Routes that change anything depend on `AdminPrincipal`; routes that only read depend on
`CurrentPrincipal`. tests/workspaces/test_write_routes.py walks every route of the app and
fails when a writing one lacks `AdminPrincipal`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, ConfigDict, Field

from tgrelay import errors
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import keys
from tgrelay.workspaces.models import ApiKey, KeyScope, Principal

CurrentRuntime = Annotated[Runtime, Depends(runtime)]


async def principal(request: Request, rt: CurrentRuntime) -> Principal:
    """FastAPI dependency: the workspace behind the request's API key, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise errors.AuthenticationFailed()
    key = await keys.verify(rt.db, presented.strip())
    await keys.record_use(rt.db, key, now=rt.clock())
    return keys.principal_of(key)


CurrentPrincipal = Annotated[Principal, Depends(principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    """FastAPI dependency of every writing route: an admin key, or 403 for a read key."""
    if principal.scope is not KeyScope.ADMIN:
        raise errors.Forbidden(
            f"this API key has the {principal.scope.value!r} scope and cannot change anything; "
            "use a key with the 'admin' scope"
        )
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


class KeyRequest(BaseModel):
    """A new API key: a name for people to recognise it, and what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=keys.NAME_MAX_LENGTH)
    scope: KeyScope


class KeyView(BaseModel):
    """An API key as listed: never the key or its hash."""

    id: str
    name: str
    prefix: str
    scope: KeyScope
    created_at: datetime
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyView:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            scope=key.scope,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
        )


class NewKeyView(KeyView):
    """A key just created: `key` is its only showing; store it now."""

    key: str


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an API key")
async def create_key(body: KeyRequest, principal: AdminPrincipal, rt: CurrentRuntime) -> NewKeyView:
    """A new key for this workspace; the response is the only place its plaintext appears."""
    key, plaintext = await keys.create(
        rt.db, principal, name=body.name, scope=body.scope, now=rt.clock()
    )
    return NewKeyView(**KeyView.of(key).model_dump(), key=plaintext)


@router.get("", summary="List the workspace's API keys")
async def list_keys(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[KeyView]:
    return [KeyView.of(key) for key in await keys.list_keys(rt.db, principal.workspace_id)]


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke an API key at once"
)
async def revoke_key(key_id: str, principal: AdminPrincipal, rt: CurrentRuntime) -> None:
    """Revoked keys fail from the next request on; the last admin key is refused (409)."""
    await keys.revoke(rt.db, principal, key_id, now=rt.clock())
