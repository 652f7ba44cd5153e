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
import time
from typing import IO, Any, TypedDict

import orjson

from tgrelay.db import sqlite_locks
from tgrelay.queue import links

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
    upsert_job_keys: InsertSql  # (ordering_key, last_job_id), replacing the key's row
    max_update_id: str  # one row: the largest updates.id before the batch
    max_job_id: str  # one row: the largest jobs.id before the batch
    newest_jobs: str  # (ordering_key, last_job_id) of keys IN the parenthesised list appended
    created_updates: str  # (id, bot_id, update_id) of the rows with an id above a bound
    update_key_columns: tuple[int, int]  # where bot_id and update_id sit in an update row
    job_subject_column: int  # where the job's subject_id goes
    job_id_column: int  # where the job's id goes
    job_after_column: int  # where its predecessor's id goes
    job_key_column: int  # where its ordering key is


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

    def write(self, request: WriteRequest) -> tuple[list[UpdateKey], float]:
        """Run one transaction: the (bot_id, update_id) of the updates it created, and the
        seconds it held the write lock (from BEGIN IMMEDIATE to COMMIT)."""
        conn, config = self._conn, self._config
        sqlite_locks.patiently(conn.execute, "BEGIN IMMEDIATE")
        locked_at = time.monotonic()
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
                self._link(jobs)
                _insert(conn, config["insert_jobs"], jobs)
            _insert(conn, config["insert_audits"], request["audits"])
            conn.execute("COMMIT")
            held = time.monotonic() - locked_at
        except BaseException:
            # A failed COMMIT (a full disk) leaves the transaction open: the next BEGIN would
            # then fail for every batch to come.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return created, held

    def _link(self, jobs: list[Row]) -> None:
        """Give the jobs ids and predecessors, and move their keys' newest job on to them."""
        if not jobs:
            return
        conn, config = self._conn, self._config
        (largest,) = conn.execute(config["max_job_id"]).fetchone()
        ids = range(largest + 1, largest + 1 + len(jobs))
        keys = [job[config["job_key_column"]] for job in jobs]
        wanted = sorted({key for key in keys if key is not None})
        newest: dict[str, int] = {}
        for start in range(0, len(wanted), MAX_BOUND_PARAMETERS):
            chunk = wanted[start : start + MAX_BOUND_PARAMETERS]
            sql = config["newest_jobs"] + "(" + ", ".join("?" * len(chunk)) + ")"
            newest.update(conn.execute(sql, chunk).fetchall())
        after_ids, moved = links.link(ids, keys, newest)
        for job, job_id, after_id in zip(jobs, ids, after_ids, strict=True):
            job[config["job_id_column"]] = job_id
            job[config["job_after_column"]] = after_id
        _insert(conn, config["upsert_job_keys"], [[key, job_id] for key, job_id in moved.items()])

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
            created, held = transactions.write(request)
            reply: dict[str, object] = {"created": created, "held": held}
        except Exception as exc:  # the parent turns it into a 503; Telegram sends again
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        _write(answers, reply)
    transactions.close()


if __name__ == "__main__":
    main()
