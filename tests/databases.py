"""The PostgreSQL server for tests: found once per session, fresh databases on demand."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tgrelay.db import migrate, tables
from tgrelay.db.engine import Database
from tgrelay.settings import Settings

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
    async def fresh_database(self, *, template: str | None = None) -> AsyncIterator[str]:
        """An empty database of its own (`tgrelay_test_<random>`), dropped afterwards; a copy
        of database `template` when given (see `migrated_template`)."""
        self.require()
        name = f"tgrelay_test_{secrets.token_hex(6)}"
        copied = f' TEMPLATE "{template}"' if template else ""
        await administer(self.server, f'CREATE DATABASE "{name}"{copied}')
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


# --- migrated databases, made once and copied ------------------------------------------------
#
# Running the 19 migrations costs 0.2-0.4 s on SQLite and about as much again on PostgreSQL
# (more on a loaded machine); hundreds of tests start on a migrated database. They get a copy
# of one migrated by the real `migrate.upgrade` once per test process, which is the same file
# (or the same catalog) the migrations would write: tests/db/test_migrations.py still runs the
# migrations themselves on fresh databases, and holds their result to the declared schema.

# The migrated SQLite file of this test process, with the folder that holds it (removed by
# the TemporaryDirectory's finalizer when the process exits).
_sqlite_template: dict[str, tuple[tempfile.TemporaryDirectory[str], Path]] = {}


async def migrated_sqlite(path: Path) -> None:
    """Put a SQLite database at HEAD at `path` (a new file), as `tgrelay migrate` leaves it."""
    if "head" not in _sqlite_template:
        folder = tempfile.TemporaryDirectory(prefix="tgrelay-template-")
        template = Path(folder.name) / "tgrelay.db"
        await migrate.upgrade(f"sqlite+aiosqlite:///{template}")
        # Every connection is closed, so WAL is checkpointed: the file alone is the database.
        assert not template.with_name("tgrelay.db-wal").exists()
        _sqlite_template["head"] = (folder, template)
    _folder, template = _sqlite_template["head"]
    assert not path.exists(), f"{path} exists: a copy would overwrite it"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    path.chmod(template.stat().st_mode & 0o777)


async def at_head(settings: Settings) -> None:
    """Give a start on a new SQLite file (the usual test case) a migrated copy, so that its
    `upgrade_if_behind` finds the schema current; other databases are left as they are."""
    path = settings.sqlite_path
    if path is not None and not path.exists():
        await migrated_sqlite(path)


def migrated_template(postgres: PostgresServer) -> Iterator[str | None]:
    """For a session fixture: the name of a database of the session's own brought to HEAD by
    the migrations, for `fresh_database(template=...)`; None when no server is reachable.

    CREATE DATABASE ... TEMPLATE copies the catalog without replaying 19 migrations; it needs
    no one connected to the template, so nothing but this fixture ever connects to it."""
    if not postgres.reachable:
        yield None
        return
    name = f"tgrelay_template_{secrets.token_hex(6)}"
    asyncio.run(administer(postgres.server, f'CREATE DATABASE "{name}"'))
    try:
        url = postgres.server.set(database=name).render_as_string(hide_password=False)
        migrate.upgrade_sync(url)
        yield name
    finally:
        asyncio.run(administer(postgres.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


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
