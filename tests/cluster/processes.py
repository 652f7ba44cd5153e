"""tgrelay processes the cluster test starts, SIGKILLs and starts again."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.e2e.harness import eventually


@dataclass(kw_only=True)
class Process:
    """One `tgrelay` command as a child process; `ready_url` (if any) answers 200 once it serves."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    kills: list[float] = field(default_factory=list)  # time.monotonic() of each SIGKILL

    async def start(self) -> None:
        note(self.log, f"start {self.name}")
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "tgrelay", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if self.ready_url is None:
            return
        ready_url = self.ready_url

        async def ready() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.popen.returncode}")
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(ready_url)).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=60, interval=0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases are left to expire."""
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait()
        self.kills.append(time.monotonic())
        note(self.log, f"SIGKILL {self.name}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def note(log: Path, what: str) -> None:
    """A line in the test's own timeline (beside the logs), in the processes' time."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    with (log.parent / "timeline.log").open("a") as out:
        out.write(f"{stamp} {what}\n")
