"""Alembic migrations produce exactly the schema that tgrelay.db.tables declares."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.databases import PostgresServer
from tgrelay.db import migrate
from tgrelay.db.tables import metadata


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def _schema_diff(url: str) -> list[object]:
    await migrate.upgrade(url)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_differences)
    finally:
        await engine.dispose()


async def test_sqlite_migrations_match_declared_schema(tmp_path: Path) -> None:
    """On SQLite, upgrading an empty database to head leaves no difference from the tables."""
    assert await _schema_diff(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}") == []


@pytest.mark.postgres
async def test_postgres_migrations_match_declared_schema(postgres: PostgresServer) -> None:
    """On PostgreSQL, upgrading an empty database to head leaves no difference from the tables."""
    async with postgres.fresh_database() as url:
        assert await _schema_diff(url) == []


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    """Running the migrations twice (every start does) changes nothing the second time."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'twice.db'}"
    await migrate.upgrade(url)
    assert await _schema_diff(url) == []
