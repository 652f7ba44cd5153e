"""Use cases for workspaces: create one with its first key, authenticate a presented key,
and the request authentication every API route depends on.

The keys themselves (create, list, revoke, verify) live in `keys`. Routes that change
anything depend on `AdminPrincipal`; routes that only read depend on `CurrentPrincipal`.
tests/workspaces/test_write_routes.py walks every route of the app and fails when a writing
one lacks `AdminPrincipal`. They live here, not in `workspaces.api`, because every domain's
routes use them and domains reach each other only through `service` modules."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import insert, select

from tgrelay import errors
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import keys
from tgrelay.workspaces.models import KeyScope, Principal, Workspace


async def create_workspace(db: Database, name: str, *, now: datetime) -> tuple[Workspace, str]:
    """A new workspace and the plaintext of its first API key (shown once, stored hashed)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise errors.InvalidInput("a workspace name has 1–200 characters")
    workspace = Workspace(id=f"ws_{secrets.token_hex(8)}", name=name, created_at=now)
    async with db.transaction() as conn:
        await conn.execute(
            insert(tables.workspaces).values(id=workspace.id, name=name, created_at=now)
        )
        _, plaintext = await keys.add(
            conn, workspace.id, name=keys.FIRST_KEY_NAME, scope=KeyScope.ADMIN, now=now
        )
    return workspace, plaintext


async def operator(db: Database, workspace_id: str) -> Principal:
    """The command-line operator acting for an existing workspace."""
    async with db.engine.connect() as conn:
        found = await conn.scalar(
            select(tables.workspaces.c.id).where(tables.workspaces.c.id == workspace_id)
        )
    if found is None:
        raise errors.NotFound(f"no workspace {workspace_id}")
    return Principal(workspace_id=workspace_id, actor="cli")


async def list_workspaces(db: Database) -> list[Workspace]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(tables.workspaces).order_by(tables.workspaces.c.created_at)
        )
        return [Workspace(id=r.id, name=r.name, created_at=r.created_at) for r in rows]


async def authenticate(db: Database, presented: str) -> Principal:
    """The principal a presented API key stands for; AuthenticationFailed otherwise."""
    return keys.principal_of(await keys.verify(db, presented))


# --- request authentication ---------------------------------------------------------------


async def principal(request: Request, rt: Annotated[Runtime, Depends(runtime)]) -> Principal:
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
