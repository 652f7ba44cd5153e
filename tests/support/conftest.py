"""The support tests' fixtures: a `database` for the stores' tests, on SQLite and on
PostgreSQL in turn; and for handler tests, a wired runtime (`relay`, tests/dispatching.py)
on a movable `clock` with a `desk` on it.

PostgreSQL tests share one database made for the session (`tgrelay_test_<random>`, dropped
at the end) and empty its tables before each test, as the queue's contract tests do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.databases import PostgresServer, emptied, session_schema_database, sqlite_with_schema
from tests.dispatching import Dispatching, dispatching
from tests.support.desks import DeskSetup, make_desk
from tgrelay.db.engine import Database
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator


@pytest.fixture(scope="session")
def support_postgres_url(postgres: PostgresServer) -> Iterator[str | None]:
    """A database of this session's own with the declared schema; None without a server."""
    yield from session_schema_database(postgres)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres: PostgresServer,
    support_postgres_url: str | None,
) -> AsyncIterator[Database]:
    """A `Database` with the declared schema and no rows, on each backend in turn."""
    if request.param == "sqlite":
        db = await sqlite_with_schema(tmp_path / "support.db")
    else:
        db = await emptied(postgres, support_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def postgres_database(
    postgres: PostgresServer, support_postgres_url: str | None
) -> AsyncIterator[Database]:
    """The PostgreSQL `Database` alone, for locks SQLite's one writer at a time never needs."""
    db = await emptied(postgres, support_postgres_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(start=datetime.now().astimezone())


@pytest.fixture
async def relay(
    emulator: RunningEmulator, tmp_path: Path, clock: Clock
) -> AsyncIterator[Dispatching]:
    async with dispatching(emulator, tmp_path, clock=clock) as found:
        yield found


@pytest.fixture
async def desk(relay: Dispatching) -> DeskSetup:
    return await make_desk(relay)
