"""The quick commands never load aiogram, SQLAlchemy or FastAPI (what made each call cost 7 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("aiogram", "sqlalchemy", "fastapi", "alembic", "structlog", "rich")
# Runs one command in a fresh interpreter, then names the heavy packages it had imported.
PROBE = """
import json, sys
from tgrelay.cli import app
heavy = set(sys.argv.pop(1).split(","))
try:
    app(sys.argv[1:], prog_name="tgrelay")
except SystemExit:
    pass
print(json.dumps(sorted({name.partition('.')[0] for name in sys.modules} & heavy)), file=sys.stderr)
"""

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["workspace", "list"],
        ["events", "catalog"],
        ["webhooks", "verify", "--secret", SECRET, "--headers", "{}", "--body", "{}"],
    ],
    ids=" ".join,
)
def test_quick_commands_load_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    """`--help`, `workspace list`, `events catalog` and `webhooks verify` import none of them."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        env={"PATH": "/usr/bin:/bin", "TGRELAY_DATA_DIR": str(tmp_path / "data")},
    )
    assert json.loads(result.stderr.splitlines()[-1]) == [], result.stderr
