"""Copies of a SQLite database: `tgrelay backup` while it serves, `tgrelay restore` while
nothing does.

Both copy with SQLite's online backup API in one step: the copy is one read transaction's
snapshot, so it is consistent however busy the writers are (in WAL mode a reader does not
stop them), and a stepped copy could restart forever under a steady stream of writes.
The standard library's sqlite3 only: no engine, no event loop.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tgrelay import errors
from tgrelay.db import migrate, sqlite_users

BUSY_TIMEOUT_SECONDS = 30.0
# Tables any tgrelay database has had since its first migration.
CORE_TABLES = frozenset({"alembic_version", "workspaces", "bots", "updates", "jobs"})


@dataclass(frozen=True, kw_only=True)
class Copied:
    path: Path
    revision: str  # the migration the copy is at
    size: int  # bytes


@dataclass(frozen=True, kw_only=True)
class Restored:
    revision: str
    aside: Path | None  # where the replaced database now is; None if there was none


def backup(database: Path, target: Path) -> Copied:
    """Copy a live database to `target` (a new file, owner only), then check the copy."""
    if not database.exists():
        raise errors.InvalidInput(f"no database at {database}")
    if target.exists():
        raise errors.InvalidInput(f"{target} exists already: a backup never overwrites a file")
    partial = target.with_name(target.name + ".partial")
    _copy(database, partial)
    try:
        revision = inspect(partial)
    except errors.TgrelayError:
        partial.unlink()
        raise
    partial.rename(target)
    _sync_directory(target.parent)
    return Copied(path=target, revision=revision, size=target.stat().st_size)


def inspect(path: Path) -> str:
    """The migration a tgrelay database file is at; InvalidInput when it is not a whole
    tgrelay database this version can run (damaged, another program's, or newer)."""
    if not path.is_file():
        raise errors.InvalidInput(f"no file at {path}")
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            checked = conn.execute("PRAGMA quick_check").fetchone()[0]
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            found = (
                names >= CORE_TABLES
                and conn.execute("SELECT version_num FROM alembic_version").fetchone()
            )
    except sqlite3.DatabaseError as exc:
        raise errors.InvalidInput(f"{path} is not a SQLite database ({exc})") from None
    if checked != "ok":
        raise errors.InvalidInput(f"{path} is damaged: {checked}")
    if not found:
        raise errors.InvalidInput(f"{path} is not a tgrelay database")
    revision = str(found[0])
    if revision not in migrate.revisions():
        raise errors.InvalidInput(
            f"{path} is at migration {revision}, which this tgrelay does not know "
            f"(it knows up to {migrate.HEAD}): restore it with the tgrelay that made it"
        )
    return revision


def restore(source: Path, database: Path, *, now: datetime) -> Restored:
    """Put a backup in the database's place, keeping the replaced database beside it as
    `<name>.replaced-<UTC time>`; Conflict while any tgrelay process has it open."""
    if database.exists() and source.resolve() == database.resolve():
        raise errors.InvalidInput(f"{source} is the database itself")
    if not source.is_file():
        raise errors.InvalidInput(f"no file at {source}")
    database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    incoming = database.with_name(database.name + ".restoring")
    incoming.unlink(missing_ok=True)  # left by a restore that was interrupted
    _copy(source, incoming)  # before the lock: a refused restore has only cost a copy
    try:
        revision = inspect(incoming)
        with sqlite_users.alone(database):
            aside = _set_aside(database, now) if database.exists() else None
            incoming.rename(database)
    finally:
        incoming.unlink(missing_ok=True)
    _sync_directory(database.parent)
    return Restored(revision=revision, aside=aside)


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup of `source` into a new file `target`, in one step.

    The copy uses a rollback journal, so it is one self-contained file (no -wal beside it);
    tgrelay switches it back to WAL when it opens it.
    """
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        with (
            closing(sqlite3.connect(source, timeout=BUSY_TIMEOUT_SECONDS)) as src,
            closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)  # pages=-1: everything in one step, one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        target.unlink(missing_ok=True)
        raise errors.InvalidInput(f"cannot copy {source}: {exc}") from None
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())


def _set_aside(database: Path, now: datetime) -> Path:
    """Move the database (folded with its WAL first) to a name of its own; its -wal and
    -shm, if a crash left any, move with it so the pair still opens."""
    with closing(sqlite3.connect(database, timeout=BUSY_TIMEOUT_SECONDS)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stamp = f"{database.name}.replaced-{now.strftime('%Y%m%dT%H%M%SZ')}"
    aside, n = database.with_name(stamp), 1
    while aside.exists():  # two restores within a second: rename would overwrite the first
        n += 1
        aside = database.with_name(f"{stamp}-{n}")
    database.rename(aside)
    for suffix in ("-wal", "-shm"):
        companion = database.with_name(database.name + suffix)
        if companion.exists():
            companion.rename(aside.with_name(aside.name + suffix))
    return aside


def _sync_directory(directory: Path) -> None:
    """Make the renames in `directory` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
