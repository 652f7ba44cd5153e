"""A migrated database of each kind (SQLite file, fresh PostgreSQL database) for retention."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import PostgresServer, migrated_sqlite


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,
    postgres_template: str | None,
) -> AsyncIterator[str]:
    """The URL of an empty, migrated database; both kinds, so the contract holds on each."""
    if request.param == "sqlite":
        await migrated_sqlite(tmp_path / "retention.db")
        yield f"sqlite+aiosqlite:///{tmp_path / 'retention.db'}"
        return
    async with postgres.fresh_database(template=postgres_template) as url:
        yield url
