"""The PostgreSQL server for tests: found once per session, fresh databases on demand."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

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
