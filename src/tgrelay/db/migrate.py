"""Apply Alembic migrations: `tgrelay migrate`, and every start before serving.

Alembic is imported only when the schema is behind: loading it costs about a second of CPU
on the project's machine, which every start paid to find nothing to do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

    from tgrelay.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; tests/db/test_migrations.py holds it to
# Alembic's own head, so a new migration cannot be forgotten here.
HEAD = "0020"


def revisions() -> list[str]:
    """Every revision this tgrelay can migrate from, oldest first, read from the file names
    ("0007_bot_ownership.py" is revision 0007) without loading Alembic."""
    return sorted(path.name.partition("_")[0] for path in (MIGRATIONS / "versions").glob("0*.py"))


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Migrate to `revision`; runs its own event loop, so call it off the app's loop."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, url, revision)


async def current_revision(db: Database) -> str | None:
    """The revision the database is at; None before the first migration."""
    try:
        async with db.engine.connect() as conn:
            found = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:  # no alembic_version table yet
        return None
    return None if found is None else str(found)


async def upgrade_if_behind(db: Database) -> None:
    """Migrate to HEAD unless the database is there already."""
    if await current_revision(db) != HEAD:
        await upgrade(db.url)
