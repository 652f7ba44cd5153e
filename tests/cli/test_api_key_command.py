"""`tgrelay api-key create|list|revoke`: keys shown once, listed without secrets, the last
admin key revoked only with --force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tgrelay.cli import app

runner = CliRunner()


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A workspace in a fresh data directory: its id and its first key's id."""
    monkeypatch.setenv("TGRELAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TGRELAY_DATABASE_URL", raising=False)
    created = runner.invoke(app, ["workspace", "create", "Ops", "--json"])
    assert created.exit_code == 0, created.output
    body = json.loads(created.stdout)
    return body["workspace_id"], "_".join(body["api_key"].split("_")[:2])


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["api-key", *args])
    return result.exit_code, result.stdout, result.stderr


def test_create_list_and_revoke(workspace: tuple[str, str]) -> None:
    """A created key is printed once, listed with its scope and never its secret, and revoked by id."""
    ws, first = workspace
    code, out, _ = cli("create", "-w", ws, "--name", "CI", "--scope", "read", "--json")
    created = json.loads(out)
    listed_code, listed, _ = cli("list", "-w", ws, "--json")
    revoke_code, revoked, _ = cli("revoke", "-w", ws, created["id"])
    _, after, _ = cli("list", "-w", ws, "--json")
    assert (code, listed_code, revoke_code) == (0, 0, 0)
    assert created["key"].startswith(created["id"] + "_")
    assert [(k["id"], k["name"], k["scope"]) for k in json.loads(listed)] == [
        (first, "first key", "admin"),
        (created["id"], "CI", "read"),
    ]
    assert created["key"] not in listed
    assert revoked == f"revoked {created['id']} (CI, read)\n"
    assert [k["id"] for k in json.loads(after)] == [first]


def test_the_last_admin_key_needs_force(workspace: tuple[str, str]) -> None:
    """Revoking the last admin key fails with the reason; --force revokes it."""
    ws, first = workspace
    refused = cli("revoke", "-w", ws, first)
    forced = cli("revoke", "-w", ws, first, "--force")
    _, listed, _ = cli("list", "-w", ws, "--json")
    assert refused[0] == 1
    assert refused[2].startswith(f"error: {first} is the workspace's last admin key")
    assert forced[:2] == (0, f"revoked {first} (first key, admin)\n")
    assert json.loads(listed) == []


def test_bad_input_is_refused_clearly(workspace: tuple[str, str]) -> None:
    """An unknown scope, an unknown key and an unknown workspace each end with a specific error."""
    ws, _ = workspace
    scope = cli("create", "-w", ws, "--name", "x", "--scope", "owner")
    unknown = cli("revoke", "-w", ws, "tgr_nope")
    nowhere = cli("list", "-w", "ws_nope")
    assert [scope[0], unknown[0], nowhere[0]] == [1, 1, 1]
    assert scope[2] == "error: --scope must be one of admin, read, not 'owner'\n"
    assert unknown[2].endswith("error: no API key tgr_nope\n")
    assert nowhere[2].endswith("error: no workspace ws_nope\n")
