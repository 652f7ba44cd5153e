"""Use cases for workspaces: create one with its first key, authenticate a presented key.

The keys themselves (create, list, revoke, verify) live in `keys`."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import insert, select

from tgrelay import errors
from tgrelay.db import tables
from tgrelay.db.engine import Database
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
