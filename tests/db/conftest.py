"""The migrated database the storage tests run on, each backend in turn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import PostgresServer, migrated_sqlite
from tgrelay.db.engine import Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,
    postgres_template: str | None,
) -> AsyncIterator[Database]:
    """A `Database` with the declared schema and no rows; on PostgreSQL, one pooled connection,
    so each transaction reuses the one the previous returned."""
    if request.param == "sqlite":
        await migrated_sqlite(tmp_path / "tgrelay.db")
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'tgrelay.db'}")
        yield database
        await database.dispose()
        return
    async with postgres.fresh_database(template=postgres_template) as url:
        database = Database(url, postgres_pool_size=1)
        yield database
        await database.dispose()
