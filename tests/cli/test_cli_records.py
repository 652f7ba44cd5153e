"""The record commands: new data directories announced, unknown ids refused, pipes and JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tgrelay.cli import app
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Workspace

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory that does not exist yet, chosen by TGRELAY_DATA_DIR."""
    path = tmp_path / "data"
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(path))
    monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)
    return path


def create_workspace(name: str) -> str:
    result = runner.invoke(app, ["workspace", "create", name, "--json"])
    assert result.exit_code == 0, result.output
    workspace_id: str = json.loads(result.stdout)["workspace_id"]
    return workspace_id


def test_a_command_that_creates_the_data_directory_says_so(data_dir: Path) -> None:
    """`workspace create` in a new place names the directory it creates, on stderr only."""
    result = runner.invoke(app, ["workspace", "create", "Ops", "--json"])
    again = runner.invoke(app, ["workspace", "create", "Support", "--json"])
    assert (result.exit_code, again.exit_code) == (0, 0)
    assert result.stderr.splitlines()[0] == (
        f"tgrelay: creating a new, empty data directory at {data_dir.resolve()} "
        "(none exists there yet; TGRELAY_DATA_DIR chooses another)"
    )
    assert "data directory" not in again.stderr
    assert sorted(json.loads(result.stdout)) == ["api_key", "workspace_id"]


def test_listing_where_nothing_exists_creates_nothing(data_dir: Path) -> None:
    """`workspace list` without a database prints no rows, says why, and leaves no directory."""
    result = runner.invoke(app, ["workspace", "list"])
    assert (result.exit_code, result.stdout, data_dir.exists()) == (0, "", False)
    assert f"no database at {data_dir.resolve() / 'tgrelay.db'} yet" in result.stderr


def test_workspace_list_in_a_pipe_is_one_tab_separated_line_each(data_dir: Path) -> None:
    """Piped output has no box and no wrapping: one workspace a line, fields tab-separated."""
    long_name = "A team whose name is much longer than any terminal is wide " * 3
    first, second = create_workspace("Ops"), create_workspace(long_name.strip())
    result = runner.invoke(app, ["workspace", "list"])
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert result.exit_code == 0
    assert [row[:2] for row in rows] == [[first, "Ops"], [second, long_name.strip()]]
    assert all(len(row) == 3 for row in rows)


def test_workspace_list_json_matches_the_service(data_dir: Path) -> None:
    """`--json`, read with sqlite3, lists what the SQLAlchemy service lists, oldest first."""
    create_workspace("Ops")
    create_workspace("Support")
    result = runner.invoke(app, ["workspace", "list", "--json"])
    listed = [
        Workspace(id=w["id"], name=w["name"], created_at=datetime.fromisoformat(w["created_at"]))
        for w in json.loads(result.stdout)
    ]
    assert listed == asyncio.run(service_listing())
    assert [w.name for w in listed] == ["Ops", "Support"]


async def service_listing() -> list[Workspace]:
    async with open_runtime(Settings()) as rt:
        return await workspaces.list_workspaces(rt.db)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bot", "list", "-w", "ws_nope"], "error: no workspace ws_nope"),
        (["bot", "list", "-w", "ws_nope", "--json"], "error: no workspace ws_nope"),
        (["bot", "check", "-w", "WS", "424242"], "error: no bot 424242 in this workspace"),
        (["bot", "disconnect", "-w", "WS", "424242"], "error: no bot 424242 in this workspace"),
        (["deliveries", "list", "-w", "ws_nope", "-e", "ep_1"], "error: no workspace ws_nope"),
        (["deliveries", "list", "-w", "WS", "-e", "ep_nope"], "error: no endpoint ep_nope"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_unknown_ids_are_errors(data_dir: Path, args: list[str], message: str) -> None:
    """A workspace, bot or endpoint that does not exist ends the command with exit code 1."""
    workspace_id = create_workspace("Ops")
    result = runner.invoke(app, [workspace_id if arg == "WS" else arg for arg in args])
    assert (result.exit_code, result.stdout, result.stderr.strip()) == (1, "", message)


def test_bot_list_of_an_empty_workspace_is_empty_json(data_dir: Path) -> None:
    """A workspace with no bots lists as an empty JSON array, not an error."""
    workspace_id = create_workspace("Ops")
    result = runner.invoke(app, ["bot", "list", "-w", workspace_id, "--json"])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
