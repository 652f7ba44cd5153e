"""The intake's SQLite transactions, run by a child process of the server.

Why a process: the group commit used to run its transaction on a thread of the serving
process. SQLite releases the GIL while it works, but each statement hands the GIL back and
forth with the event loop, and under load every hand-off waited for the busy loop: on
bench/intake.py a batch of 20 updates took ~3 ms for ~0.6 ms of work, and the event loop
sat idle half of the time waiting for its commits. A child has an interpreter and a GIL of
its own; the parent only writes a request to a pipe and reads the answer on its event loop.

The child knows no schema: the parent (inbox.writer) sends the SQL once, at start, and each
request carries parameter rows ready to bind. One request is one transaction: the updates
(duplicates ignored), a job for each update that was created (its row id as the job's
subject), and audit rows, committed before the answer. The server answers Telegram only
after the answer, so an update is stored before it is acknowledged (DESIGN promise 1).

Frames are a 4-byte big-endian length, then JSON. The child ignores SIGINT and SIGTERM (the
server's graceful shutdown still needs it) and exits at the end of its input, which is also
what it sees when the server dies: it never outlives the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from tgrelay.inbox import sqlite_transactions
from tgrelay.inbox.sqlite_transactions import (
    UpdateKey,
    WriterConfig,
    WriteRequest,
)


class WriterProcessError(Exception):
    """The writer process refused or failed a transaction, or is gone; nothing was acknowledged."""


@dataclass(frozen=True)
class _Child:
    process: asyncio.subprocess.Process
    # Held while one answer is read. The child answers in the order requests were written,
    # and asyncio.Lock queues its waiters in order too.
    answers: asyncio.Lock


class SqliteWriterProcess:
    """The parent's handle on the child, started on first use.

    Requests may be written while earlier ones are still running: the child then starts the
    next transaction as soon as it commits the previous one, without waiting for a round
    trip through the event loop.
    """

    def __init__(
        self, config: WriterConfig, *, on_lock_held: Callable[[float], None] | None = None
    ) -> None:
        self._config = config
        self._on_lock_held = on_lock_held  # told how long each transaction held the lock
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._ending: set[asyncio.Task[int]] = set()  # children killed, not yet reaped

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one is running."""
        return self._child.process.pid if self._child is not None else None

    async def write(self, request: WriteRequest) -> set[UpdateKey]:
        """Run one transaction; the (bot_id, update_id) of the updates it created."""
        reply = await self._exchange(await self._running(), request)
        if self._on_lock_held is not None:
            self._on_lock_held(reply["held"])
        return {(bot_id, update_id) for bot_id, update_id in reply["created"]}

    async def close(self) -> None:
        """End the child's input and wait for it to finish what it holds."""
        child, self._child = self._child, None
        if child is not None:
            stdin = child.process.stdin
            assert stdin is not None
            stdin.close()
            with contextlib.suppress(ConnectionError):
                await stdin.wait_closed()
            await child.process.wait()
        await asyncio.gather(*self._ending)

    async def _running(self) -> _Child:
        async with self._starting:
            if self._child is not None and self._child.process.returncode is None:
                return self._child
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                sqlite_transactions.__name__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            child = _Child(process, asyncio.Lock())
            try:
                await self._exchange(child, self._config)
            except BaseException:
                self._discard(child)
                raise
            self._child = child
            return child

    async def _exchange(self, child: _Child, message: object) -> Any:
        process = child.process
        assert process.stdin is not None
        assert process.stdout is not None
        # No await between the write and queueing for the answer, so answers pair up.
        process.stdin.write(sqlite_transactions.frame(message))
        async with child.answers:
            try:
                await process.stdin.drain()
                header = await process.stdout.readexactly(sqlite_transactions.LENGTH.size)
                body = await process.stdout.readexactly(
                    sqlite_transactions.LENGTH.unpack(header)[0]
                )
            except BaseException as exc:
                # Half an exchange leaves the pipe out of step (a late answer would be taken
                # for the next request's): this child is done for; the next write starts
                # another.
                self._discard(child)
                if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError)):
                    raise WriterProcessError(f"the SQLite writer process ended: {exc!r}") from exc
                raise
        reply = orjson.loads(body)
        if "error" in reply:
            raise WriterProcessError(reply["error"])
        return reply

    def _discard(self, child: _Child) -> None:
        """Kill a child and reap it in the background (this may run while being cancelled)."""
        if self._child is child:
            self._child = None
        process = child.process
        if process.returncode is None:
            process.kill()
        assert process.stdin is not None
        process.stdin.close()
        reaping = asyncio.create_task(process.wait())
        self._ending.add(reaping)
        reaping.add_done_callback(self._ending.discard)
