"""`tgrelay backup` and `tgrelay restore` on SQLite: a consistent copy while writes go on, a
restore refused while a server runs (or of a file it cannot run), the replaced file kept."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from typer.testing import CliRunner

from tgrelay import errors
from tgrelay.cli import app
from tgrelay.crypto import TokenCipher
from tgrelay.db import backup as backups
from tgrelay.db import migrate, sqlite_users
from tgrelay.db.engine import Database

runner = CliRunner()
TGRELAY = str(Path(sys.executable).parent / "tgrelay")
DEADLINE_SECONDS = 120.0


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TGRELAY_DATA_DIR for a SQLite tgrelay with one workspace, Ops."""
    path = tmp_path / "data"
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(path))
    monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("TGRELAY_SECRET_KEYS", raising=False)  # the data directory's key file
    assert runner.invoke(app, ["workspace", "create", "Ops"]).exit_code == 0
    return path


def names(database: Path) -> list[str]:
    """The workspaces' names stored in a database file."""
    with closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM workspaces ORDER BY name")]


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} within {DEADLINE_SECONDS} s"
        time.sleep(0.01)


class PairWriter:
    """Writes two lease rows per transaction, as fast as it can, until stopped."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.committed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with closing(sqlite3.connect(self.database, timeout=30, isolation_level=None)) as conn:
            while not self._stop.is_set():
                n = self.committed
                conn.execute("BEGIN IMMEDIATE")
                for side in ("a", "b"):
                    conn.execute(
                        "INSERT INTO leases (name, holder, expires_at) VALUES (?, 'w', ?)",
                        (f"{side}-{n}", "2030-01-01 00:00:00.000000"),
                    )
                conn.execute("COMMIT")
                self.committed = n + 1

    def __enter__(self) -> PairWriter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_backup_taken_while_writes_go_on_is_consistent(data_dir: Path, tmp_path: Path) -> None:
    """Every transaction is in the copy whole or not at all (as many a-rows as b-rows), the
    copy passes SQLite's check, stands alone (no -wal beside it) and is owner-only."""
    database, copy = data_dir / "tgrelay.db", tmp_path / "copy.db"
    with PairWriter(database) as writer:
        wait_for(lambda: writer.committed >= 50, "the writer commits 50 transactions")
        result = runner.invoke(app, ["backup", str(copy)])
        at_backup = writer.committed
        wait_for(lambda: writer.committed >= at_backup + 50, "the writer goes on")
    with closing(sqlite3.connect(copy)) as conn:
        a, b = (
            conn.execute(
                "SELECT count(*) FROM leases WHERE name LIKE ?", (f"{side}-%",)
            ).fetchone()[0]
            for side in "ab"
        )
        checked = conn.execute("PRAGMA integrity_check").fetchone()[0]
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"backed up {database} (migration {migrate.HEAD}, {copy.stat().st_size:,} bytes) "
        f"to {copy}\n"
    )
    assert (checked, a == b, 50 <= a <= at_backup + 1) == ("ok", True, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "data"]
    assert copy.stat().st_mode & 0o777 == 0o600
    assert names(copy) == ["Ops"]


def test_backup_never_overwrites_and_leaves_postgresql_to_pg_dump(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing target is refused untouched; with PostgreSQL both commands point to its
    own tools instead of connecting."""
    taken = tmp_path / "taken.db"
    taken.write_text("mine")
    refused = runner.invoke(app, ["backup", str(taken)])
    monkeypatch.setenv("TGRELAY_DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")
    postgres_backup = runner.invoke(app, ["backup", str(tmp_path / "pg.db")])
    postgres_restore = runner.invoke(app, ["restore", str(taken)])
    assert (refused.exit_code, refused.stderr, taken.read_text()) == (
        1,
        f"error: {taken} exists already: a backup never overwrites a file\n",
        "mine",
    )
    assert [(r.exit_code, r.stderr) for r in (postgres_backup, postgres_restore)] == [
        (
            1,
            "error: the database is PostgreSQL: use pg_dump --format=custom "
            "(README, section Backups)\n",
        ),
        (1, "error: the database is PostgreSQL: use pg_restore (README, section Backups)\n"),
    ]


@pytest.fixture
def serving(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """`tgrelay serve` on the data directory, answering /healthz."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [TGRELAY, "serve", "--port", str(port)],
        env={
            "PATH": os.environ["PATH"],
            "TGRELAY_DATA_DIR": str(data_dir),
            "TGRELAY_TELEGRAM_API_URL": "http://127.0.0.1:9",  # no bot: nothing calls it
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, "serve answers /healthz")
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


@pytest.mark.slow
def test_restore_is_refused_while_serve_runs_and_works_once_it_stopped(
    data_dir: Path, tmp_path: Path, serving: subprocess.Popen[str]
) -> None:
    """While serve runs, restore changes nothing; once it stopped, the backup is the database
    and the replaced one, with what was written since the backup, is kept beside it."""
    database, copy = data_dir / "tgrelay.db", tmp_path / "copy.db"
    assert runner.invoke(app, ["backup", str(copy)]).exit_code == 0
    assert runner.invoke(app, ["workspace", "create", "Later"]).exit_code == 0

    refused = runner.invoke(app, ["restore", str(copy)])
    files_while_serving = sorted(p.name for p in data_dir.iterdir() if "replaced" in p.name)
    serving.send_signal(signal.SIGTERM)
    serving.wait(timeout=60)
    restored = runner.invoke(app, ["restore", str(copy)])

    assert (refused.exit_code, refused.stderr) == (
        1,
        f"error: a tgrelay process has {database} open (serve, worker or another command): "
        "stop it first\n",
    )
    assert files_while_serving == []
    assert restored.exit_code == 0, restored.output
    [aside] = [p for p in data_dir.iterdir() if ".replaced-" in p.name]
    assert restored.stdout.splitlines() == [
        f"restored {copy} (migration {migrate.HEAD}) into {database}",
        f"the database it replaced is kept at {aside}",
    ]
    assert (names(database), names(aside)) == (["Ops"], ["Later", "Ops"])
    assert not database.with_name("tgrelay.db.restoring").exists()


def test_restore_refuses_what_it_could_not_run(data_dir: Path, tmp_path: Path) -> None:
    """A file that is no SQLite database, another program's database, and a tgrelay database
    of a migration newer than this tgrelay's are refused, the database left as it was."""
    database = data_dir / "tgrelay.db"
    garbage, foreign, newer = tmp_path / "garbage", tmp_path / "foreign.db", tmp_path / "newer.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with closing(sqlite3.connect(foreign)) as conn:
        conn.execute("CREATE TABLE notes (x)")
    assert runner.invoke(app, ["backup", str(newer)]).exit_code == 0
    with closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    before = sorted(p.name for p in data_dir.iterdir())

    results = [runner.invoke(app, ["restore", str(path)]) for path in (garbage, foreign, newer)]

    assert [(r.exit_code, r.stderr) for r in results] == [
        (1, f"error: cannot copy {garbage}: file is not a database\n"),
        (1, f"error: {data_dir / 'tgrelay.db.restoring'} is not a tgrelay database\n"),
        (
            1,
            f"error: {data_dir / 'tgrelay.db.restoring'} is at migration 9999, which this "
            f"tgrelay does not know (it knows up to {migrate.HEAD}): restore it with the "
            "tgrelay that made it\n",
        ),
    ]
    assert (sorted(p.name for p in data_dir.iterdir()), names(database)) == (before, ["Ops"])


def test_an_older_backup_is_restored_and_migrated_on_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup from an earlier migration restores into an empty data directory (nothing to
    keep aside) and the next command brings it to HEAD."""
    older = tmp_path / "older.db"
    migrate.upgrade_sync(f"sqlite+aiosqlite:///{older}", "0018")
    data_dir = tmp_path / "data"
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(data_dir))
    monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)

    restored = runner.invoke(app, ["restore", str(older)])
    started = runner.invoke(app, ["workspace", "create", "Later"])  # opens it as serve does

    database = data_dir / "tgrelay.db"
    assert restored.exit_code == 0, restored.output
    assert restored.stdout.splitlines() == [
        f"restored {older} (migration 0018) into {database}",
        f"the next start migrates it from 0018 to {migrate.HEAD}",
    ]
    assert started.exit_code == 0, started.output
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (migrate.HEAD,)


async def test_a_database_cannot_be_opened_while_a_restore_replaces_it(tmp_path: Path) -> None:
    """A process starting mid-restore is refused; one holding the database refuses a restore,
    until it disposes of it."""
    database = tmp_path / "tgrelay.db"
    with sqlite_users.alone(database), pytest.raises(errors.ConfigurationError) as refused:
        Database(f"sqlite+aiosqlite:///{database}")
    created_by_the_refused_start = database.exists()
    db = Database(f"sqlite+aiosqlite:///{database}")
    with pytest.raises(errors.Conflict), sqlite_users.alone(database):
        pass
    await db.dispose()
    with sqlite_users.alone(database):
        pass
    assert refused.value.message == (
        f"{database} is being restored (tgrelay restore); start again once it has finished"
    )
    assert not created_by_the_refused_start


def test_restore_warns_when_the_keys_do_not_open_the_backups_secrets(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restored where no key is configured, or another one, restore says how many stored
    secrets will not open and where the right keys go; with the backup's key it says nothing."""
    key = (data_dir / "secret_keys").read_text().strip()
    with closing(sqlite3.connect(data_dir / "tgrelay.db")) as conn, conn:
        conn.execute(
            "INSERT INTO endpoints (id, workspace_id, url, status, secret_ciphertext, "
            "breaker_state, created_at, updated_at) SELECT 'ep_1', id, 'https://example.com', "
            "'enabled', ?, 'closed', created_at, created_at FROM workspaces",
            (TokenCipher([SecretStr(key)]).encrypt("whsec_1"),),
        )
    copy = tmp_path / "copy.db"
    assert runner.invoke(app, ["backup", str(copy)]).exit_code == 0
    same = runner.invoke(app, ["restore", str(copy)])
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(elsewhere))
    keyless = runner.invoke(app, ["restore", str(copy)])
    monkeypatch.setenv("TGRELAY_SECRET_KEYS", Fernet.generate_key().decode())
    other_key = runner.invoke(app, ["restore", str(copy)])

    assert [(r.exit_code, r.stderr) for r in (same, keyless, other_key)] == [
        (0, ""),
        (
            0,
            "warning: 1 stored secrets open with no key (none is configured yet): put the "
            "keys in use when the backup was made into TGRELAY_SECRET_KEYS (or "
            f"{elsewhere / 'secret_keys'}) before starting tgrelay\n",
        ),
        (
            0,
            "warning: 1 stored secrets open with the configured keys: put the keys in use "
            "when the backup was made into TGRELAY_SECRET_KEYS (or "
            f"{elsewhere / 'secret_keys'}) before starting tgrelay\n",
        ),
    ]


def test_restoring_twice_within_a_second_keeps_both_replaced_databases(
    data_dir: Path, tmp_path: Path
) -> None:
    """Each replaced database gets a name of its own, even within the same UTC second."""
    database, copy = data_dir / "tgrelay.db", tmp_path / "copy.db"
    assert runner.invoke(app, ["backup", str(copy)]).exit_code == 0
    assert runner.invoke(app, ["workspace", "create", "Later"]).exit_code == 0
    now = datetime(2026, 12, 6, 17, 30, 5, tzinfo=UTC)

    first, second = (backups.restore(copy, database, now=now) for _ in range(2))

    assert (first.aside, second.aside) == (
        data_dir / "tgrelay.db.replaced-20261206T173005Z",
        data_dir / "tgrelay.db.replaced-20261206T173005Z-2",
    )
    assert [names(p) for p in (first.aside, second.aside) if p] == [["Later", "Ops"], ["Ops"]]
