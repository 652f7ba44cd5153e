"""Workspaces read straight from a SQLite file with the standard library's sqlite3.

`tgrelay workspace list` answers from here: importing SQLAlchemy alone costs 0.6 s of CPU
on the project's machine, more than the whole command may take (issue 15: 0.6 s). Writes,
and every read on PostgreSQL, go through `service` as usual.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from tgrelay.workspaces.models import Workspace


def list_in_sqlite(path: Path) -> list[Workspace]:
    """Every workspace in the database at `path`, oldest first, as `service.list_workspaces`."""
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT id, name, created_at FROM workspaces ORDER BY created_at"
        ).fetchall()
    # Timestamps are naive UTC text on SQLite (db.types.Timestamp).
    return [
        Workspace(id=id_, name=name, created_at=datetime.fromisoformat(created).replace(tzinfo=UTC))
        for id_, name, created in rows
    ]
