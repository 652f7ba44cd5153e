"""Fixtures for the queue's contract tests: one `database` per test on SQLite and PostgreSQL.

PostgreSQL tests share one database created for this session (`tgrelay_test_<random>`,
dropped at the end) and empty its tables before each test, so suites running side by side
on one server never collide and no test pays for CREATE DATABASE.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.databases import PostgresServer, administer
from tgrelay.db import tables
from tgrelay.db.engine import Database


@pytest.fixture(scope="session")
def queue_postgres_url(postgres: PostgresServer) -> Iterator[str | None]:
    """A database of this session's own with the declared schema; None without a server."""
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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,
    queue_postgres_url: str | None,
) -> AsyncIterator[Database]:
    """A `Database` with the declared schema and no rows, on each backend in turn."""
    if request.param == "sqlite":
        db = await _sqlite_database(tmp_path)
    else:
        db = await _postgres_database(postgres, queue_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def postgres_database(
    postgres: PostgresServer, queue_postgres_url: str | None
) -> AsyncIterator[Database]:
    """The PostgreSQL `Database` alone, for behaviour SQLite's single writer cannot show."""
    db = await _postgres_database(postgres, queue_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture structlog events instead of rendering them (rich tracebacks are slow to draw)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


async def _sqlite_database(directory: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{directory / 'queue.db'}")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
    return db


async def _postgres_database(postgres: PostgresServer, url: str | None) -> Database:
    postgres.require()
    assert url is not None
    db = Database(url)
    async with db.transaction() as conn:
        # DELETE, not TRUNCATE: on tables this small it is ten times faster.
        for table in reversed(tables.metadata.sorted_tables):
            await conn.execute(table.delete())
    return db


async def _create_schema(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(tables.metadata.create_all)
    finally:
        await engine.dispose()
