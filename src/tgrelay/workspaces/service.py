"""Use cases for workspaces: create one with its first key, authenticate a presented key."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import crypto, errors
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.workspaces.models import Principal, Workspace


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
        plaintext = await _add_key(conn, workspace.id, now=now)
    return workspace, plaintext


async def create_api_key(db: Database, workspace_id: str, *, now: datetime) -> str:
    """Another key for an existing workspace; returns its plaintext."""
    async with db.transaction() as conn:
        found = await conn.scalar(
            select(tables.workspaces.c.id).where(tables.workspaces.c.id == workspace_id)
        )
        if found is None:
            raise errors.NotFound(f"no workspace {workspace_id}")
        return await _add_key(conn, workspace_id, now=now)


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
    parts = crypto.split_api_key(presented)
    if parts is None:
        raise errors.AuthenticationFailed("malformed API key")
    key_id, secret = parts
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(tables.api_keys).where(
                    tables.api_keys.c.id == key_id, tables.api_keys.c.revoked_at.is_(None)
                )
            )
        ).first()
    if row is None or not crypto.secret_matches(secret, row.secret_hash):
        raise errors.AuthenticationFailed("unknown or revoked API key")
    return Principal(workspace_id=row.workspace_id, actor=f"api_key:{key_id}")


async def _add_key(conn: AsyncConnection, workspace_id: str, *, now: datetime) -> str:
    key = crypto.new_api_key()
    await conn.execute(
        insert(tables.api_keys).values(
            id=key.key_id, workspace_id=workspace_id, secret_hash=key.secret_hash, created_at=now
        )
    )
    return key.plaintext
