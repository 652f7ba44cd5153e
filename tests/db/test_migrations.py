"""Alembic migrations produce exactly the schema that tgrelay.db.tables declares."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.databases import PostgresServer
from tgrelay.db import migrate
from tgrelay.db.engine import Database
from tgrelay.db.tables import in_declared_schema, metadata


def _differences(connection: Connection) -> list[object]:
    # The search objects (tables.SEARCH_OBJECTS) are dialect-specific: left out here, and
    # checked by test_*_search_objects_exist below.
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "include_name": in_declared_schema}
    )
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


def test_head_is_alembics_head() -> None:
    """migrate.HEAD names the newest migration, the one Alembic would upgrade to."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert script.get_current_head() == migrate.HEAD


async def test_a_start_migrates_a_new_database_to_head(tmp_path: Path) -> None:
    """upgrade_if_behind brings an empty database to HEAD, with the declared schema."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    db = Database(url)
    try:
        before = await migrate.current_revision(db)
        await migrate.upgrade_if_behind(db)
        after = await migrate.current_revision(db)
    finally:
        await db.dispose()
    assert (before, after, await _schema_diff(url)) == (None, migrate.HEAD, [])


# Opens a current database the way every start does, then says whether Alembic was loaded.
START_ON_A_CURRENT_DATABASE = """
import asyncio, sys
from tgrelay.db import migrate
from tgrelay.db.engine import Database

async def start() -> None:
    db = Database(sys.argv[1])
    await migrate.upgrade_if_behind(db)
    await db.dispose()

asyncio.run(start())
print("alembic" in sys.modules)
"""


def test_a_start_on_a_current_database_does_not_load_alembic(tmp_path: Path) -> None:
    """When the schema is at HEAD, a start reads its revision and never imports Alembic."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'current.db'}"
    migrate.upgrade_sync(url)
    result = subprocess.run(
        [sys.executable, "-c", START_ON_A_CURRENT_DATABASE, url],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == "False\n"


async def _search_objects(url: str) -> set[str]:
    """The names of the search objects the database holds (tables.SEARCH_OBJECTS' kinds)."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                rows = await conn.execute(
                    text(
                        "SELECT name FROM sqlite_master WHERE name LIKE 'support_articles_fts%' "
                        "OR name = 'support_articles_search'"
                    )
                )
            else:
                rows = await conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'support_articles' AND is_generated = 'ALWAYS' "
                        "UNION SELECT indexname FROM pg_indexes "
                        "WHERE tablename = 'support_articles' AND indexdef LIKE '%USING gin%'"
                    )
                )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


SQLITE_SEARCH = {
    "support_articles_search",
    "support_articles_fts",
    "support_articles_fts_config",
    "support_articles_fts_data",
    "support_articles_fts_docsize",
    "support_articles_fts_idx",
    "support_articles_fts_insert",
    "support_articles_fts_delete",
    "support_articles_fts_update",
}


async def test_sqlite_search_objects_exist(tmp_path: Path) -> None:
    """The schema comparison leaves the FTS5 table out, so this checks the migration and
    create_all both make it, its content view, shadow tables and three triggers."""
    migrated = f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    await migrate.upgrade(migrated)
    created = Database(f"sqlite+aiosqlite:///{tmp_path / 'created.db'}")
    async with created.transaction() as conn:
        await conn.run_sync(metadata.create_all)
    await created.dispose()
    assert (await _search_objects(migrated), await _search_objects(created.url)) == (
        SQLITE_SEARCH,
        SQLITE_SEARCH,
    )


@pytest.mark.postgres
async def test_postgres_search_objects_exist(postgres: PostgresServer) -> None:
    """The comparison leaves the tsvector column and its GIN index out: the migration makes
    them, generated, and nothing else of the kind."""
    async with postgres.fresh_database() as url:
        await migrate.upgrade(url)
        found = await _search_objects(url)
    assert found == {"search_vector", "ix_support_articles_search_vector"}


def _down_and_up(url: str) -> None:
    from alembic import command

    config = migrate.alembic_config(url)
    command.downgrade(config, "0015")
    command.upgrade(config, "head")


async def test_the_knowledge_base_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    """0017's downgrade removes its triggers before SQLite's next ALTER checks them, and the
    upgrade after it leaves the declared schema and every search object."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'down.db'}"
    await migrate.upgrade(url)
    await asyncio.to_thread(_down_and_up, url)
    assert (await _schema_diff(url), await _search_objects(url)) == ([], SQLITE_SEARCH)
