"""`tgrelay demo`, run as a user runs it: the real console script, the real child processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

STEPS = [
    "start the Telegram emulator and tgrelay serve",
    "create a workspace",
    "connect a bot",
    "a user writes to the bot",
    "link a group, phase 1: /start <token> in private",
    "link a group, phase 2: the same user adds the bot",
    "send an alert to the group",
    "subscribe a local receiver",
    "verify a signed delivery",
]
# Two process starts and a CLI command, each importing for seconds on a busy machine, then
# the steps' own deadlines of 20 s at most.
RUN_SECONDS = 600


@pytest.mark.slow
def test_demo_runs_every_step_and_cleans_up(tmp_path: Path) -> None:
    """`tgrelay demo` exits 0 after printing every step with its ok, and leaves no process or data behind."""
    script = Path(sys.executable).with_name("tgrelay")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    demo = subprocess.Popen(
        [str(script), "demo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = demo.communicate(timeout=RUN_SECONDS)
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)  # so the demo stops its children
            demo.communicate(timeout=60)
    lines = out.splitlines()
    shown = f"stdout:\n{out}\nstderr:\n{err}"  # all of it, should an assertion fail

    assert (demo.returncode, err) == (0, ""), shown
    assert [line for line in lines if line.startswith("[")] == [
        f"[{number}/{len(STEPS)}] {name}" for number, name in enumerate(STEPS, start=1)
    ], shown
    assert len([line for line in lines if re.fullmatch(r"    ok \(\d+\.\d s\)", line)]) == 9, shown
    assert lines[-1] == "demo: all 9 steps held", shown
    assert "    $ KEY=tgr_" in out, shown
    assert "its Standard Webhooks signature verifies with the endpoint's secret" in out, shown
    # Gone once it has exited: its temporary directory and the service it started.
    assert list(tmp_path.iterdir()) == [], shown
    api = re.search(r"tgrelay serve answers at (http://127\.0\.0\.1:\d+)", out)
    assert api is not None, shown
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api.group(1)}/healthz")
