"""The SQLite writer's child process: one sqlite3 connection, a transaction per request.

Run as `python -m tgrelay.inbox.sqlite_transactions` by `inbox.sqlite_writer`, which explains
why a child process and what it promises. This module also holds what both sides share (the
frames on the pipe and their types) and imports nothing heavier than sqlite3 and orjson: the
child is a second interpreter for as long as the server runs, and asyncio and logging alone
took its memory from 14 to 22 MB (bench/idle.py).
"""

from __future__ import annotations

import functools
import os
import signal
import sqlite3
import struct
import sys
from typing import IO, Any, TypedDict

import orjson

from tgrelay.db import sqlite_locks

# SQLite (3.32+) binds at most 32,766 parameters per statement; stay below.
MAX_BOUND_PARAMETERS = 30_000
LENGTH = struct.Struct(">I")

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


def frame(message: object) -> bytes:
    body = orjson.dumps(message)
    return LENGTH.pack(len(body)) + body


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
    header = stream.read(LENGTH.size)
    if len(header) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return orjson.loads(body)


def _write(stream: IO[bytes], message: object) -> None:
    stream.write(frame(message))
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
