"""The intake's SQLite writer process: transactions in order, errors answered, deaths survived."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.databases import migrated_sqlite
from tests.inbox.updates import NOW, incoming
from tgrelay import audit
from tgrelay.inbox.sqlite_transactions import WriteRequest
from tgrelay.inbox.sqlite_writer import SqliteWriterProcess, WriterProcessError
from tgrelay.inbox.writer import write_request, writer_config


def _request(*update_ids: int, audits: tuple[audit.Entry, ...] = ()) -> WriteRequest:
    return write_request(
        [incoming(i) for i in update_ids], list(audits), now=NOW, default_max_attempts=5
    )


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "tgrelay.db"
    await migrated_sqlite(path)
    return path


@pytest.fixture
async def process(database: Path) -> AsyncIterator[SqliteWriterProcess]:
    writer = SqliteWriterProcess(writer_config(str(database), synchronous="FULL"))
    yield writer
    await writer.close()


def _rows(database: Path) -> list[tuple[int, int, str, str]]:
    """(update_id, subject row id matches, ordering key, state) of each update's job."""
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT u.update_id, j.subject_id = u.id, j.ordering_key, j.state "
            "FROM updates u JOIN jobs j ON j.kind = 'process_update' AND j.subject_id = u.id "
            "ORDER BY u.update_id"
        ).fetchall()


async def test_pipelined_transactions_commit_in_the_order_they_were_sent(
    process: SqliteWriterProcess, database: Path
) -> None:
    """Requests written before earlier answers arrive still run one after another, in order."""
    first, second, third = await asyncio.gather(
        process.write(_request(3, 1, 2)),
        process.write(_request(2, 4)),
        process.write(_request(4)),
    )
    assert (first, second, third) == ({(1, 1), (1, 2), (1, 3)}, {(1, 4)}, set())
    assert _rows(database) == [(i, 1, "chat:1:10", "pending") for i in (1, 2, 3, 4)]
    with sqlite3.connect(database) as conn:
        jobs = conn.execute("SELECT payload, run_at, created_at FROM jobs ORDER BY id").fetchall()
        links = conn.execute("SELECT id, after_id FROM jobs ORDER BY id").fetchall()
        newest = conn.execute("SELECT ordering_key, last_job_id FROM job_keys").fetchall()
    # Each job of the chat follows the one before, across transactions too.
    assert [after for _, after in links] == [None] + [job_id for job_id, _ in links[:-1]]
    assert newest == [("chat:1:10", links[-1][0])]
    # Within a batch, jobs are created in update order whatever order the updates came in,
    # with times in the text form SQLAlchemy writes (the queue compares them as text).
    assert jobs == [
        (
            f'{{"bot_id":1,"update_id":{i}}}',
            "2026-11-21 12:00:00.000000",
            "2026-11-21 12:00:00.000000",
        )
        for i in (1, 2, 3, 4)
    ]


async def test_each_transaction_tells_how_long_it_held_the_write_lock(database: Path) -> None:
    """What tgrelay_sqlite_write_lock_seconds{writer="intake"} observes: one figure a batch."""
    held: list[float] = []
    writer = SqliteWriterProcess(
        writer_config(str(database), synchronous="FULL"), on_lock_held=held.append
    )
    try:
        await writer.write(_request(1, 2))
        await writer.write(_request(3))
    finally:
        await writer.close()
    assert len(held) == 2
    assert all(0 < seconds < 5 for seconds in held)


async def test_a_failed_transaction_is_answered_rolled_back_and_the_process_goes_on(
    database: Path,
) -> None:
    """An error inside a transaction comes back as WriterProcessError; nothing of it is kept."""
    config = writer_config(str(database), synchronous="FULL")
    config["insert_audits"] = {
        **config["insert_audits"],
        "head": "INSERT INTO no_such_table VALUES ",
    }
    writer = SqliteWriterProcess(config)
    try:
        entry = audit.Entry(action="intake.rejected", actor=audit.TELEGRAM, at=NOW)
        with pytest.raises(WriterProcessError, match="no_such_table"):
            await writer.write(_request(1, audits=(entry,)))
        pid = writer.pid
        assert await writer.write(_request(2)) == {(1, 2)}
        assert writer.pid == pid
    finally:
        await writer.close()
    assert [row[0] for row in _rows(database)] == [2]


async def test_a_killed_process_fails_its_request_and_the_next_write_starts_another(
    process: SqliteWriterProcess, database: Path
) -> None:
    """SIGKILL of the child: the request in hand fails (the server answers 503), then a new one runs."""
    assert await process.write(_request(1)) == {(1, 1)}
    killed = process.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    with pytest.raises(WriterProcessError, match="ended"):
        await process.write(_request(2))
    assert await process.write(_request(2, 3)) == {(1, 2), (1, 3)}
    assert process.pid not in (None, killed)
    assert [row[0] for row in _rows(database)] == [1, 2, 3]


async def test_the_process_ignores_interrupts_and_ends_with_its_input(
    process: SqliteWriterProcess,
) -> None:
    """Ctrl-C reaches the whole process group; the child keeps serving until the server closes it."""
    await process.write(_request(1))
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    assert await process.write(_request(2)) == {(1, 2)}
    assert process.pid == pid
    await process.close()
    assert process.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_database_that_cannot_be_opened_is_reported(tmp_path: Path) -> None:
    writer = SqliteWriterProcess(
        writer_config(str(tmp_path / "missing" / "tgrelay.db"), synchronous="FULL")
    )
    with pytest.raises(WriterProcessError, match="cannot open"):
        await writer.write(_request(1))
    await writer.close()
