"""Fixtures for the queue's contract tests: one `database` per test on SQLite and PostgreSQL.

PostgreSQL tests share one database created for this session (`tgrelay_test_<random>`,
dropped at the end) and empty its tables before each test, so suites running side by side
on one server never collide and no test pays for CREATE DATABASE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.databases import PostgresServer, emptied, session_schema_database, sqlite_with_schema
from tgrelay.db.engine import Database


@pytest.fixture(scope="session")
def queue_postgres_url(postgres: PostgresServer) -> Iterator[str | None]:
    """A database of this session's own with the declared schema; None without a server."""
    yield from session_schema_database(postgres)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,
    queue_postgres_url: str | None,
) -> AsyncIterator[Database]:
    """A `Database` with the declared schema and no rows, on each backend in turn."""
    if request.param == "sqlite":
        db = await sqlite_with_schema(tmp_path / "queue.db")
    else:
        db = await emptied(postgres, queue_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def postgres_database(
    postgres: PostgresServer, queue_postgres_url: str | None
) -> AsyncIterator[Database]:
    """The PostgreSQL `Database` alone, for behaviour SQLite's single writer cannot show."""
    db = await emptied(postgres, queue_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture(autouse=True)
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture structlog events instead of rendering them (rich tracebacks are slow to draw)."""
    with structlog.testing.capture_logs() as captured:
        yield captured
