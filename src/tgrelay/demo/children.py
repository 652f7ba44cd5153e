"""The demo's child processes: the emulator and `tgrelay serve` (with `--flows`, also
examples/flow_app.py), each logging to its own file.

They run the real commands (`python -m tgrelay …`, `python examples/flow_app.py …` with this
interpreter), so the demo exercises what a user runs. Whatever ends the demo (success, a failed step, Ctrl-C,
SIGTERM), every child is stopped: SIGTERM first, then SIGKILL if it lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tgrelay.demo.runner import StepFailed

# `tgrelay serve` lets requests finish for up to 15 s at shutdown (its uvicorn setting).
STOP_SECONDS = 20.0
# Log lines shown when a child exits early, enough for a traceback's end.
TAIL_LINES = 20


def tgrelay(*args: str) -> list[str]:
    """The command line of `tgrelay ARGS…` under the interpreter running the demo."""
    return [sys.executable, "-m", "tgrelay", *args]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now: the one the system picks for port 0."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any TGRELAY_ variable, plus `settings`.

    An operator's own settings (a PostgreSQL URL, a public URL) must not reach the demo's
    processes: the tour runs on its own data directory, in polling mode.
    """
    kept = {name: value for name, value in os.environ.items() if not name.startswith("TGRELAY_")}
    # Log lines reach the file as they are written, so an early exit shows its last words.
    return {**kept, "PYTHONUNBUFFERED": "1", **settings}


@dataclass(frozen=True, kw_only=True)
class Child:
    name: str  # how the demo's output calls it
    process: asyncio.subprocess.Process
    log: Path

    def tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-TAIL_LINES:])


class Children:
    """The processes a demo started; `check` fails the running step when one has exited."""

    def __init__(self, cwd: Path, env: Mapping[str, str]) -> None:
        self._cwd = cwd
        self._env = dict(env)
        self._started: list[Child] = []

    async def start(self, name: str, args: list[str], log: Path) -> Child:
        """Start `tgrelay ARGS…` in the background, its output going to `log`."""
        return await self.start_program(name, tgrelay(*args), log)

    async def start_script(self, name: str, script: Path, args: list[str], log: Path) -> Child:
        """Start `python SCRIPT ARGS…` (an example app) under the demo's interpreter."""
        return await self.start_program(name, [sys.executable, str(script), *args], log)

    async def start_program(self, name: str, argv: list[str], log: Path) -> Child:
        """Start `argv` in the background, its output going to `log`."""
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self._cwd,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                # Out of the terminal's process group: Ctrl-C reaches the demo alone, which
                # then stops its children in order.
                start_new_session=True,
            )
        child = Child(name=name, process=process, log=log)
        self._started.append(child)
        return child

    async def output(self, args: list[str], *, timeout: float) -> str:
        """Run `tgrelay ARGS…` to its end: its stdout, or StepFailed with its stderr."""
        shown = shlex.join(["tgrelay", *args])
        process = await asyncio.create_subprocess_exec(
            *tgrelay(*args),
            cwd=self._cwd,
            env=self._env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await process.communicate()
        except TimeoutError:
            raise StepFailed(f"waited {timeout:g} s for `{shown}` to end") from None
        finally:
            await _stop(process)  # at once when it has ended; else it was timed out or cancelled
        if process.returncode != 0:
            raise StepFailed(
                f"`{shown}` exited with status {process.returncode}:\n"
                + stderr.decode(errors="replace").strip()
            )
        return stdout.decode()

    def check(self) -> None:
        """StepFailed, with its last log lines, when a child has exited."""
        for child in self._started:
            code = child.process.returncode
            if code is not None:
                raise StepFailed(
                    f"{child.name} exited with status {code}; the end of {child.log}:\n"
                    + child.tail()
                )

    async def exited(self) -> Child:
        """The first child to exit; waits until one does."""
        waits = {asyncio.create_task(child.process.wait()): child for child in self._started}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return waits[done.pop()]

    async def stop_all(self) -> None:
        """Stop every child, the last started first."""
        while self._started:
            await _stop(self._started.pop().process)


@contextlib.asynccontextmanager
async def running(cwd: Path, env: Mapping[str, str]) -> AsyncIterator[Children]:
    """Children started within the block are stopped when it ends, however it ends."""
    children = Children(cwd, env)
    try:
        yield children
    finally:
        await children.stop_all()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_SECONDS):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
