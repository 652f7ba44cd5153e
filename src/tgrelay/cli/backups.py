"""`tgrelay backup PATH` and `tgrelay restore PATH`: copies of a single-node SQLite database.

PostgreSQL has its own tools (pg_dump, pg_restore; the README's Backups section): these
commands refuse it rather than half-do it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tgrelay.cli import invocation

if TYPE_CHECKING:
    from tgrelay.settings import Settings

PathArgument = Annotated[Path, typer.Argument(help="the backup file", dir_okay=False)]


def _sqlite_file(found: Settings, *, postgres_hint: str) -> Path:
    path = found.sqlite_path
    if path is None:
        if found.is_sqlite:
            raise invocation.fail("an in-memory database has nothing to back up or restore")
        raise invocation.fail(
            f"the database is PostgreSQL: use {postgres_hint} (README, section Backups)"
        )
    return path


def backup(path: PathArgument) -> None:
    """Copy the SQLite database to PATH, consistent even while serve runs."""
    from tgrelay.db import backup as backups

    found = invocation.settings(logging=False)
    database = _sqlite_file(found, postgres_hint="pg_dump --format=custom")
    with invocation.errors_as_exit():
        copied = backups.backup(database, path)
    typer.echo(
        f"backed up {database} (migration {copied.revision}, {copied.size:,} bytes) to {path}"
    )
    typer.echo(
        "The copy holds bot tokens and endpoint secrets encrypted: keep the keys "
        f"(TGRELAY_SECRET_KEYS, or {found.data_dir / 'secret_keys'}) safe too, apart from it.",
        err=True,
    )


def restore(path: PathArgument) -> None:
    """Replace the SQLite database by the backup at PATH; the replaced one is kept aside.

    Refuses while any tgrelay process (serve, worker, another command) has it open.
    """
    from tgrelay.clock import utcnow
    from tgrelay.db import backup as backups
    from tgrelay.db import migrate

    found = invocation.settings(logging=False)
    database = _sqlite_file(found, postgres_hint="pg_restore")
    with invocation.errors_as_exit():
        restored = backups.restore(path, database, now=utcnow())
    typer.echo(f"restored {path} (migration {restored.revision}) into {database}")
    if restored.aside is not None:
        typer.echo(f"the database it replaced is kept at {restored.aside}")
    if restored.revision != migrate.HEAD:
        typer.echo(f"the next start migrates it from {restored.revision} to {migrate.HEAD}")
    _warn_about_keys(found, database)


def _warn_about_keys(found: Settings, database: Path) -> None:
    """Say so when the restored secrets do not open with the keys this tgrelay would use: a
    start without keys would generate a new one, which opens none of them."""
    from tgrelay import keyring
    from tgrelay.crypto import TokenCipher
    from tgrelay.settings import known_secret_keys

    keys = known_secret_keys(found)
    with invocation.errors_as_exit():
        missing = keyring.undecryptable_in(database, TokenCipher(keys) if keys else None)
    if missing:
        where = "the configured keys" if keys else "no key (none is configured yet)"
        typer.echo(
            f"warning: {missing} stored secrets open with {where}: put the keys in use when "
            "the backup was made into TGRELAY_SECRET_KEYS (or "
            f"{found.data_dir / 'secret_keys'}) before starting tgrelay",
            err=True,
        )
