"""`tgrelay audit list`: an operator reads a workspace's audit trail at the command line."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tgrelay import audit
from tgrelay.cli import app
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings
from tgrelay.workspaces import service as workspaces

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
# (action, bot id, detail) written one a minute from T0 for the workspace under test.
HISTORY = [
    ("bot.connected", 101, {"username": "first_bot"}),
    ("bot.connected", 102, {"username": "second_bot"}),
    ("bot.status_changed", 101, {"old": "healthy", "new": "token_revoked"}),
    ("endpoint.created", None, {"endpoint_id": "ep_1"}),
]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A SQLite data dir the command finds through TGRELAY_* variables, as an operator's."""
    monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TGRELAY_LOG_LEVEL", "WARNING")
    return Settings(_env_file=None)


@pytest.fixture
def workspace_id(settings: Settings) -> str:
    """A workspace with HISTORY's rows, beside another workspace's row and a row of none."""

    async def setup() -> str:
        async with open_runtime(settings) as rt:
            workspace, _ = await workspaces.create_workspace(rt.db, "Acme", now=T0)
            other, _ = await workspaces.create_workspace(rt.db, "Other", now=T0)
            async with rt.db.transaction() as conn:
                for minute, (action, bot_id, detail) in enumerate(HISTORY):
                    await audit.record(
                        conn,
                        action=action,
                        actor="cli",
                        now=T0 + minute * MINUTE,
                        workspace_id=workspace.id,
                        bot_id=bot_id,
                        detail=detail,
                    )
                await audit.record(
                    conn, action="bot.connected", actor="cli", now=T0, workspace_id=other.id
                )
                await audit.record(
                    conn, action="intake.rejected", actor=audit.TELEGRAM, now=T0, bot_id=101
                )
        return workspace.id

    return asyncio.run(setup())


def listed(*args: str) -> list[tuple[str, int | None, str]]:
    """(action, bot_id, at) of each row `audit list --json` prints."""
    result = CliRunner().invoke(app, ["audit", "list", "--json", *args])
    assert result.exit_code == 0, result.output
    return [(row["action"], row["bot_id"], row["at"]) for row in json.loads(result.stdout)]


def at(minute: int) -> str:
    return (T0 + minute * MINUTE).isoformat()


def test_audit_list_filters_and_pages_one_workspace(workspace_id: str) -> None:
    """`audit list --json` prints only the workspace's rows, newest first, filtered by action, bot, a row id or an instant, and at most --limit of them."""
    everything = listed("-w", workspace_id)
    ids = [
        row["id"]
        for row in json.loads(
            CliRunner().invoke(app, ["audit", "list", "--json", "-w", workspace_id]).stdout
        )
    ]

    assert everything == [
        ("endpoint.created", None, at(3)),
        ("bot.status_changed", 101, at(2)),
        ("bot.connected", 102, at(1)),
        ("bot.connected", 101, at(0)),
    ]
    assert listed("-w", workspace_id, "--action", "bot.connected") == everything[2:]
    assert listed("-w", workspace_id, "--bot", "101") == [everything[1], everything[3]]
    assert listed("-w", workspace_id, "--limit", "2") == everything[:2]
    assert listed("-w", workspace_id, "--before", str(ids[1])) == everything[2:]
    assert listed("-w", workspace_id, "--before", "2026-11-21T10:02") == everything[2:]


def test_audit_list_prints_tab_separated_rows_in_a_pipe(workspace_id: str) -> None:
    """Without --json, piped rows are one line each: id, UTC time, action, actor, bot, count, detail."""
    result = CliRunner().invoke(
        app, ["audit", "list", "-w", workspace_id, "--action", "bot.status_changed"]
    )
    assert result.exit_code == 0, result.output
    [row] = [line.split("\t") for line in result.stdout.splitlines()]
    assert row[1:] == [
        "2026-11-21 10:02:00",
        "bot.status_changed",
        "cli",
        "101",
        "1",
        '{"old": "healthy", "new": "token_revoked"}',
    ]


def test_audit_list_refuses_an_unknown_workspace_or_a_bad_before(workspace_id: str) -> None:
    """An unknown workspace and a `--before` that is neither a row id nor a time end with the reason and exit status 1."""
    unknown = CliRunner().invoke(app, ["audit", "list", "-w", "ws_nope"])
    bad = CliRunner().invoke(app, ["audit", "list", "-w", workspace_id, "--before", "yesterday"])
    # Compared word by word: a console narrower than the message wraps it.
    assert (unknown.exit_code, " ".join(unknown.stderr.split())) == (
        1,
        "error: no workspace ws_nope",
    )
    assert (bad.exit_code, " ".join(bad.stderr.split())) == (
        1,
        "error: before must be a row id or an ISO 8601 time like 2026-01-31T09:00, not 'yesterday'",
    )
