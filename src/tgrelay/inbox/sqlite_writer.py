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
import functools
import os
import signal
import sqlite3
import struct
import sys
from dataclasses import dataclass
from typing import IO, Any, TypedDict

import orjson

from tgrelay.db import sqlite_locks

# SQLite (3.32+) binds at most 32,766 parameters per statement; stay below.
MAX_BOUND_PARAMETERS = 30_000
_LENGTH = struct.Struct(">I")

Row = list[Any]
UpdateKey = tuple[int, int]  # (bot_id, update_id)


class InsertSql(TypedDict):
    """An INSERT split around its one VALUES group, so that n rows make one statement."""

    head: str  # "INSERT INTO t (a, b) VALUES "
    group: str  # "(?, ?)"
    tail: str  # "" or " ON CONFLICT (…) DO NOTHING"


class WriterConfig(TypedDict):
    path: str
    synchronous: str
    insert_updates: InsertSql
    insert_jobs: InsertSql
    insert_audits: InsertSql
    max_update_id: str  # one row: the largest updates.id before the batch
    created_updates: str  # (id, bot_id, update_id) of the rows with an id above a bound
    update_key_columns: tuple[int, int]  # where bot_id and update_id sit in an update row
    job_subject_column: int  # where the job's subject_id goes


class WriteRequest(TypedDict):
    updates: list[Row]
    jobs: list[Row]  # jobs[i] belongs to updates[i]; its subject_id is filled in here
    audits: list[Row]


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

    def __init__(self, config: WriterConfig) -> None:
        self._config = config
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
                __name__,
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
        process.stdin.write(_frame(message))
        async with child.answers:
            try:
                await process.stdin.drain()
                header = await process.stdout.readexactly(_LENGTH.size)
                body = await process.stdout.readexactly(_LENGTH.unpack(header)[0])
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


def _frame(message: object) -> bytes:
    body = orjson.dumps(message)
    return _LENGTH.pack(len(body)) + body


# The child's side.


class _Transactions:
    """One sqlite3 connection; `write` runs a WriteRequest as one IMMEDIATE transaction."""

    def __init__(self, config: WriterConfig) -> None:
        self._config = config
        conn = sqlite3.connect(config["path"], isolation_level=None, cached_statements=512)
        sqlite_locks.patiently(conn.execute, "PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={config['synchronous']}")
        conn.execute("PRAGMA busy_timeout=0")  # sqlite_locks waits, looking more often
        conn.execute("PRAGMA foreign_keys=ON")
        self._conn = conn

    def write(self, request: WriteRequest) -> list[UpdateKey]:
        conn, config = self._conn, self._config
        sqlite_locks.patiently(conn.execute, "BEGIN IMMEDIATE")
        try:
            created: list[UpdateKey] = []
            if request["updates"]:
                (before,) = conn.execute(config["max_update_id"]).fetchone()
                _insert(conn, config["insert_updates"], request["updates"])
                bot_at, update_at = config["update_key_columns"]
                index = {
                    (row[bot_at], row[update_at]): i for i, row in enumerate(request["updates"])
                }
                jobs: list[Row] = []
                rows = conn.execute(config["created_updates"], (before,)).fetchall()
                # Jobs in update order (bot, then update_id), as inbox.writer gives them.
                for row_id, bot_id, update_id in sorted(rows, key=lambda row: row[1:]):
                    job = list(request["jobs"][index[(bot_id, update_id)]])
                    job[config["job_subject_column"]] = row_id
                    jobs.append(job)
                    created.append((bot_id, update_id))
                _insert(conn, config["insert_jobs"], jobs)
            _insert(conn, config["insert_audits"], request["audits"])
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (a full disk) leaves the transaction open: the next BEGIN would
            # then fail for every batch to come.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return created

    def close(self) -> None:
        self._conn.close()


def _insert(conn: sqlite3.Connection, sql: InsertSql, rows: list[Row]) -> None:
    """Insert rows with as few multi-row statements as the parameter limit allows.

    One statement rather than executemany: sqlite3 releases and retakes the GIL around every
    row it steps through, which costs even a single-threaded process a little.
    """
    if not rows:
        return
    per_statement = MAX_BOUND_PARAMETERS // len(rows[0])
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        statement = _rows_sql(sql["head"], sql["group"], sql["tail"], len(chunk))
        conn.execute(statement, [value for row in chunk for value in row])


@functools.lru_cache(maxsize=1024)
def _rows_sql(head: str, group: str, tail: str, rows: int) -> str:
    return head + ", ".join([group] * rows) + tail


def _read(stream: IO[bytes]) -> Any:
    """The next frame, or None at the end of input."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return orjson.loads(body)


def _write(stream: IO[bytes], message: object) -> None:
    stream.write(_frame(message))
    stream.flush()


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    requests = sys.stdin.buffer
    # Frames go to the pipe alone: anything else printed lands on stderr.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    config: WriterConfig | None = _read(requests)
    if config is None:
        return
    try:
        transactions = _Transactions(config)
    except sqlite3.Error as exc:
        _write(answers, {"error": f"cannot open {config['path']}: {exc}"})
        return
    _write(answers, {"ready": True})
    while (request := _read(requests)) is not None:
        try:
            reply: dict[str, object] = {"created": transactions.write(request)}
        except Exception as exc:  # the parent turns it into a 503; Telegram sends again
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _write(answers, reply)
    transactions.close()


if __name__ == "__main__":
    main()
