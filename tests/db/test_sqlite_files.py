"""The SQLite database's files: private to the owner, as the README promises."""

from __future__ import annotations

import stat
from pathlib import Path

from tgrelay.db import migrate
from tgrelay.db.engine import Database


async def test_database_and_its_wal_files_are_owner_only(tmp_path: Path) -> None:
    """A new database, its -wal, its -shm and its .inuse lock file are created 0600 inside a
    0700 directory."""
    data_dir = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data_dir / 'tgrelay.db'}"
    db = Database(url)
    try:
        await migrate.upgrade(url)
        async with db.transaction() as conn:
            await conn.exec_driver_sql("CREATE TABLE probe (x INTEGER)")
        modes = {
            path.name: stat.S_IMODE(path.stat().st_mode) for path in sorted(data_dir.iterdir())
        }
    finally:
        await db.dispose()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert modes == {
        "tgrelay.db": 0o600,
        "tgrelay.db-shm": 0o600,
        "tgrelay.db-wal": 0o600,
        "tgrelay.db.inuse": 0o600,
    }
