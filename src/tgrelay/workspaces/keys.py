"""API key lifecycle: create (shown once), list, revoke, and verify a presented key.

Every request reads its key's row, so a revocation holds in every process from the next
request on (no cache to expire). `last_used_at` is written at most once a minute per key,
so an API under load does not pay a write per request.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, crypto, errors
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.workspaces.models import ApiKey, KeyScope, Principal

# A key's last use is recorded when the stored one is at least this old.
USE_RECORD_SECONDS = 60.0
NAME_MAX_LENGTH = 200
FIRST_KEY_NAME = "first key"


def checked_name(name: str) -> str:
    """A key's name, trimmed; InvalidInput when empty or too long."""
    name = name.strip()
    if not name or len(name) > NAME_MAX_LENGTH:
        raise errors.InvalidInput(f"an API key's name has 1–{NAME_MAX_LENGTH} characters")
    return name


async def add(
    conn: AsyncConnection, workspace_id: str, *, name: str, scope: KeyScope, now: datetime
) -> tuple[ApiKey, str]:
    """Store a new key in the caller's transaction; returns it and its plaintext."""
    new = crypto.new_api_key()
    key = ApiKey(
        id=new.key_id,
        workspace_id=workspace_id,
        name=checked_name(name),
        scope=scope,
        created_at=now,
        last_used_at=None,
        revoked_at=None,
    )
    await conn.execute(
        insert(tables.api_keys).values(
            id=key.id,
            workspace_id=workspace_id,
            secret_hash=new.secret_hash,
            name=key.name,
            scope=scope.value,
            created_at=now,
        )
    )
    return key, new.plaintext


async def create(
    db: Database, principal: Principal, *, name: str, scope: KeyScope, now: datetime
) -> tuple[ApiKey, str]:
    """Another key for the principal's workspace, audited; returns it and its plaintext."""
    async with db.transaction() as conn:
        await _workspace_exists(conn, principal.workspace_id)
        key, plaintext = await add(conn, principal.workspace_id, name=name, scope=scope, now=now)
        await audit.record(
            conn,
            action="api_key.created",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            detail={"api_key_id": key.id, "name": key.name, "scope": key.scope.value},
        )
    return key, plaintext


async def list_keys(db: Database, workspace_id: str) -> list[ApiKey]:
    """The workspace's keys that still work, oldest first."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            select(tables.api_keys)
            .where(
                tables.api_keys.c.workspace_id == workspace_id,
                tables.api_keys.c.revoked_at.is_(None),
            )
            .order_by(tables.api_keys.c.created_at, tables.api_keys.c.id)
        )
        return [_key(row) for row in rows]


async def revoke(
    db: Database, principal: Principal, key_id: str, *, now: datetime, force: bool = False
) -> ApiKey:
    """Revoke a key of the principal's workspace and end its UI sessions.

    The workspace's last admin key stays unless `force` (the operator's `--force`): without
    it nobody could manage the workspace's keys through the API again.
    """
    workspace_id = principal.workspace_id
    async with db.transaction() as conn:
        # Locking every admin key of the workspace serialises concurrent revocations on
        # PostgreSQL, so two of them cannot each leave the other as the "last" one.
        admins = set(
            (
                await conn.scalars(
                    select(tables.api_keys.c.id)
                    .where(
                        tables.api_keys.c.workspace_id == workspace_id,
                        tables.api_keys.c.scope == KeyScope.ADMIN.value,
                        tables.api_keys.c.revoked_at.is_(None),
                    )
                    .with_for_update()
                )
            ).all()
        )
        row = (
            await conn.execute(
                select(tables.api_keys).where(
                    tables.api_keys.c.id == key_id,
                    tables.api_keys.c.workspace_id == workspace_id,
                    tables.api_keys.c.revoked_at.is_(None),
                )
            )
        ).first()
        if row is None:
            raise errors.NotFound(f"no API key {key_id}")
        if admins == {key_id} and not force:
            raise errors.Conflict(
                f"{key_id} is the workspace's last admin key: create another admin key first "
                "(the operator can still revoke it with `tgrelay api-key revoke --force`)"
            )
        await conn.execute(
            update(tables.api_keys).where(tables.api_keys.c.id == key_id).values(revoked_at=now)
        )
        await conn.execute(
            delete(tables.ui_sessions).where(tables.ui_sessions.c.api_key_id == key_id)
        )
        await audit.record(
            conn,
            action="api_key.revoked",
            actor=principal.actor,
            now=now,
            workspace_id=workspace_id,
            detail={"api_key_id": key_id, "name": row.name, "scope": row.scope},
        )
    return dataclasses.replace(_key(row), revoked_at=now)


async def verify(db: Database, presented: str) -> ApiKey:
    """The key a presented plaintext stands for; AuthenticationFailed otherwise."""
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
    return _key(row)


def use_is_stale(key: ApiKey, now: datetime) -> bool:
    """Whether a use at `now` should be written: none stored yet, or the stored one is old."""
    return key.last_used_at is None or now - key.last_used_at >= timedelta(
        seconds=USE_RECORD_SECONDS
    )


async def record_use(db: Database, key: ApiKey, *, now: datetime) -> None:
    """Note that the key was used, unless a use within the last minute is already stored."""
    if not use_is_stale(key, now):
        return
    cutoff = now - timedelta(seconds=USE_RECORD_SECONDS)
    async with db.transaction() as conn:
        # The condition makes concurrent requests of several processes write once.
        await conn.execute(
            update(tables.api_keys)
            .where(
                tables.api_keys.c.id == key.id,
                (tables.api_keys.c.last_used_at.is_(None))
                | (tables.api_keys.c.last_used_at <= cutoff),
            )
            .values(last_used_at=now)
        )


def principal_of(key: ApiKey) -> Principal:
    return Principal(workspace_id=key.workspace_id, actor=f"api_key:{key.id}", scope=key.scope)


async def _workspace_exists(conn: AsyncConnection, workspace_id: str) -> None:
    found = await conn.scalar(
        select(tables.workspaces.c.id).where(tables.workspaces.c.id == workspace_id)
    )
    if found is None:
        raise errors.NotFound(f"no workspace {workspace_id}")


def _key(row: Row[tuple[object, ...]]) -> ApiKey:
    mapping = row._mapping
    return ApiKey(
        id=mapping["id"],
        workspace_id=mapping["workspace_id"],
        name=mapping["name"],
        scope=KeyScope(mapping["scope"]),
        created_at=mapping["created_at"],
        last_used_at=mapping["last_used_at"],
        revoked_at=mapping["revoked_at"],
    )
