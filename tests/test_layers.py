"""The import-linter contracts (pyproject.toml) hold, and each fails on an import it forbids."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` run on `project` (a folder holding src/tgrelay and pyproject.toml)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(project / "pyproject.toml")],
        cwd=project / "src",  # where import-linter finds the package to analyse
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_tree_keeps_every_contract() -> None:
    """Today's code keeps every layer contract."""
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "violation", "broken"),
    [
        (
            "queue/retry.py",
            "from tgrelay.inbox import service as _inbox",
            "Infrastructure imports no domain and no entry point BROKEN",
        ),
        (
            "groups/service.py",
            "from tgrelay.bots import store as _bots_store",
            "Domains reach each other only through service modules (and records: models, "
            "catalog) BROKEN",
        ),
        (
            "groups/store.py",
            "from tgrelay.support import models as _support",
            "Domains depend one way: support, then groups and retention, inbox, bots, "
            "events, workspaces BROKEN",
        ),
        (
            "bots/service.py",
            "from tgrelay import app as _app",
            "Nothing imports the entry points app, cli and ui (but themselves) BROKEN",
        ),
        (
            "groups/handlers.py",
            "from tgrelay.testing import clock as _clock",
            "Production code never imports tgrelay.testing BROKEN",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, violation: str, broken: str
) -> None:
    """One forbidden import added to a copy of the tree breaks the contract that forbids it."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    package = tmp_path / "src" / "tgrelay"
    shutil.copytree(ROOT / "src" / "tgrelay", package, ignore=shutil.ignore_patterns("static"))
    with (package / module).open("a") as source:
        source.write(f"\n{violation}\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken in " ".join(result.stdout.split()), result.stdout
