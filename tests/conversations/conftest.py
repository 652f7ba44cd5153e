"""The conversations tests' fixtures: a `database` for the store's tests, on SQLite and on
PostgreSQL in turn (PostgreSQL: one database for the session, emptied before each test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.databases import PostgresServer, emptied, session_schema_database, sqlite_with_schema
from tgrelay.db.engine import Database


@pytest.fixture(scope="session")
def conversations_postgres_url(postgres: PostgresServer) -> Iterator[str | None]:
    """A database of this session's own with the declared schema; None without a server."""
    yield from session_schema_database(postgres)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,
    conversations_postgres_url: str | None,
) -> AsyncIterator[Database]:
    """A `Database` with the declared schema and no rows, on each backend in turn."""
    if request.param == "sqlite":
        db = await sqlite_with_schema(tmp_path / "conversations.db")
    else:
        db = await emptied(postgres, conversations_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()
