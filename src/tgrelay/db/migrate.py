"""Apply Alembic migrations: `tgrelay migrate`, and every start before serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Migrate to `revision`; runs its own event loop, so call it off the app's loop."""
    command.upgrade(alembic_config(url), revision)


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, url, revision)
