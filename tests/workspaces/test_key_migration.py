"""Keys that exist before API key scopes become admin keys named "first key"."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.databases import PostgresServer
from tgrelay.db import migrate

BEFORE_SCOPES = "0008"


async def upgraded_keys(url: str) -> list[tuple[str, str, str, object]]:
    await migrate.upgrade(url, BEFORE_SCOPES)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO workspaces (id, name, created_at) "
                    "VALUES ('ws_1', 'Ops', '2026-01-01 00:00:00')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO api_keys (id, workspace_id, secret_hash, created_at) "
                    "VALUES ('tgr_old', 'ws_1', :hash, '2026-01-01 00:00:00')"
                ),
                {"hash": "0" * 64},
            )
        await migrate.upgrade(url)
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, name, scope, last_used_at FROM api_keys"))
            return [tuple(row) for row in rows]
    finally:
        await engine.dispose()


async def test_existing_keys_become_admin_keys_on_sqlite(tmp_path: Path) -> None:
    """On SQLite, a key stored before the upgrade is an admin key named "first key", never used."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    assert await upgraded_keys(url) == [("tgr_old", "first key", "admin", None)]


@pytest.mark.postgres
async def test_existing_keys_become_admin_keys_on_postgres(postgres: PostgresServer) -> None:
    """On PostgreSQL, a key stored before the upgrade is an admin key named "first key"."""
    async with postgres.fresh_database() as url:
        assert await upgraded_keys(url) == [("tgr_old", "first key", "admin", None)]
