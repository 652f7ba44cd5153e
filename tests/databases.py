"""The PostgreSQL server for tests: found once per session, fresh databases on demand."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tgrelay.db import tables
from tgrelay.db.engine import Database

POSTGRES_URL_VARIABLE = "TGRELAY_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True, kw_only=True)
class PostgresServer:
    """The reachable server (`url` of its maintenance database), or why there is none."""

    server: URL
    reachable: bool
    skip_reason: str

    def require(self) -> None:
        if not self.reachable:
            pytest.skip(self.skip_reason)

    @asynccontextmanager
    async def fresh_database(self) -> AsyncIterator[str]:
        """An empty database of its own (`tgrelay_test_<random>`), dropped afterwards."""
        self.require()
        name = f"tgrelay_test_{secrets.token_hex(6)}"
        await administer(self.server, f'CREATE DATABASE "{name}"')
        try:
            yield self.server.set(database=name).render_as_string(hide_password=False)
        finally:
            await administer(self.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def administer(server: URL, statement: str) -> None:
    """Run a statement on the `postgres` maintenance database, outside a transaction."""
    engine = create_async_engine(
        server.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"timeout": 5},
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


# --- databases with the declared schema, for the stores' contract tests ---------------------


def session_schema_database(postgres: PostgresServer) -> Iterator[str | None]:
    """For a session fixture: a database of the session's own (`tgrelay_test_<random>`) with
    the declared schema, dropped at the end; None when no server is reachable."""
    if not postgres.reachable:
        yield None
        return
    name = f"tgrelay_test_{secrets.token_hex(6)}"
    url = postgres.server.set(database=name).render_as_string(hide_password=False)
    asyncio.run(administer(postgres.server, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(_create_schema(url))
        yield url
    finally:
        asyncio.run(administer(postgres.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def emptied(postgres: PostgresServer, url: str | None) -> Database:
    """The session's schema database with no rows (skipped without a server)."""
    postgres.require()
    assert url is not None
    db = Database(url)
    async with db.transaction() as conn:
        # DELETE, not TRUNCATE: on tables this small it is ten times faster.
        for table in reversed(tables.metadata.sorted_tables):
            await conn.execute(table.delete())
    return db


async def sqlite_with_schema(path: Path) -> Database:
    """A new SQLite database at `path` with the declared schema."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
    return db


async def _create_schema(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.metadata.create_all)
    finally:
        await engine.dispose()
