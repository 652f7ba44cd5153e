"""The `/v1/api-keys` routes (request authentication itself is `service.CurrentPrincipal`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import keys, service
from tgrelay.workspaces.models import ApiKey, KeyScope

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = service.CurrentPrincipal
AdminPrincipal = service.AdminPrincipal

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
