"""The PostgreSQL intake's own promises, with two writers on one database as two processes
would be: one copy of each update, one chain of jobs per chat, nothing half-written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.databases import PostgresServer
from tests.e2e.harness import eventually
from tests.inbox.updates import NOW, incoming
from tgrelay import errors
from tgrelay.db import tables
from tgrelay.inbox import postgres_writer
from tgrelay.inbox.writer import POSTGRES_LANES, UPDATES_QUEUE, GroupCommitWriter, lane_index
from tgrelay.queue import store as job_store
from tgrelay.queue.models import Job
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings

pytestmark = pytest.mark.postgres

CHAT_KEY = "chat:1:10"  # incoming()'s default chat


@asynccontextmanager
async def running(rt: Runtime) -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(rt)
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        await writer.stop()
        await task


@pytest.fixture
async def runtimes(tmp_path: Path, postgres: PostgresServer) -> AsyncIterator[list[Runtime]]:
    """Two runtimes on one fresh database: two serving processes, as far as it can tell."""
    keys = (SecretStr(Fernet.generate_key().decode()),)
    async with postgres.fresh_database() as url, AsyncExitStack() as stack:
        settings = Settings(data_dir=tmp_path, database_url=url, secret_keys=keys)
        yield [
            await stack.enter_async_context(open_runtime(settings, clock=lambda: NOW))
            for _ in range(2)
        ]


@pytest.fixture
async def writers(runtimes: list[Runtime]) -> AsyncIterator[list[GroupCommitWriter]]:
    async with running(runtimes[0]) as first, running(runtimes[1]) as second:
        yield [first, second]


async def _intake_backends_waiting_for_a_lock(rt: Runtime) -> list[int]:
    async with rt.db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = :name AND wait_event_type = 'Lock'"
            ),
            {"name": postgres_writer.APPLICATION_NAME},
        )
        return [int(pid) for (pid,) in rows]


async def _waiting(rt: Runtime, count: int) -> list[int]:
    """The intake connections blocked on a lock, once there are `count` of them."""
    found: list[int] = []

    async def enough() -> bool:
        found[:] = await _intake_backends_waiting_for_a_lock(rt)
        return len(found) == count

    await eventually(enough)
    return found


@asynccontextmanager
async def _holding_key(rt: Runtime, key: str) -> AsyncIterator[AsyncConnection]:
    """Another transaction holding a key's job_keys row, as an enqueuer of that chat would."""
    async with rt.db.transaction() as conn:
        await conn.execute(
            text("SELECT last_job_id FROM job_keys WHERE ordering_key = :key FOR UPDATE"),
            {"key": key},
        )
        yield conn


async def _chain(rt: Runtime, key: str) -> tuple[list[int], list[int], int]:
    """The key's jobs walked from its first along after_id, the update ids in that order, and
    job_keys' newest job of the key."""
    j, u = tables.jobs, tables.updates
    async with rt.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(j.c.id, j.c.after_id, u.c.update_id)
                .select_from(j.join(u, u.c.id == j.c.subject_id))
                .where(j.c.ordering_key == key)
            )
        ).all()
        newest = await conn.scalar(
            select(tables.job_keys.c.last_job_id).where(tables.job_keys.c.ordering_key == key)
        )
    following = {row.after_id: row for row in rows}
    chain: list[int] = []
    updates: list[int] = []
    after = None
    while after in following:
        row = following.pop(after)
        chain.append(row.id)
        updates.append(row.update_id)
        after = row.id
    assert not following, f"jobs off the chain: {following}"
    assert newest is not None
    return chain, updates, int(newest)


async def _stored_updates(rt: Runtime) -> list[int]:
    """The update ids stored, each once per process_update job it has."""
    j, u = tables.jobs, tables.updates
    async with rt.db.engine.connect() as conn:
        return list(
            await conn.scalars(
                select(u.c.update_id)
                .select_from(u.outerjoin(j, j.c.subject_id == u.c.id))
                .order_by(u.c.update_id)
            )
        )


async def test_writers_waiting_for_one_chat_link_its_jobs_in_commit_order(
    runtimes: list[Runtime], writers: list[GroupCommitWriter]
) -> None:
    """Two processes' batches for one chat, held up together, link their jobs one after the
    other: each job follows the one committed before it, and job_keys names the last."""
    assert await writers[0].store(incoming(1)) is True
    async with _holding_key(runtimes[0], CHAT_KEY):
        first = asyncio.create_task(writers[0].store(incoming(2)))
        await _waiting(runtimes[0], 1)
        second = asyncio.create_task(writers[1].store(incoming(3)))
        await _waiting(runtimes[0], 2)
    assert list(await asyncio.gather(first, second)) == [True, True]
    chain, updates, newest = await _chain(runtimes[0], CHAT_KEY)
    # Which of the two took the key's row first is the server's choice.
    assert (len(chain), updates[0], sorted(updates[1:]), newest) == (3, 1, [2, 3], chain[-1])


async def test_a_chat_held_up_holds_up_only_its_own_lane(
    runtimes: list[Runtime], writers: list[GroupCommitWriter]
) -> None:
    """A process writes its batches on several connections, each chat's always on the same
    one: while a chat's batch waits for the chat's row, a chat of another lane is stored, and
    the held chat's later update waits behind the first, so its jobs keep their order."""
    rt, writer = runtimes[0], writers[0]
    other_chat = next(
        chat
        for chat in range(11, 100)
        if lane_index(1, chat, POSTGRES_LANES) != lane_index(1, 10, POSTGRES_LANES)
    )
    assert await writer.store(incoming(1)) is True
    async with _holding_key(rt, CHAT_KEY):
        held = asyncio.create_task(writer.store(incoming(2)))
        await _waiting(rt, 1)
        later = asyncio.create_task(writer.store(incoming(3)))
        # Bounded: with one batch in flight per process this would wait for the lock.
        async with asyncio.timeout(15):
            assert await writer.store(incoming(4, chat_id=other_chat)) is True
    assert list(await asyncio.gather(held, later)) == [True, True]
    chain, updates, newest = await _chain(rt, CHAT_KEY)
    assert (updates, newest) == ([1, 2, 3], chain[-1])


async def test_an_update_stored_while_its_chats_last_job_ends_is_not_left_blocked(
    runtimes: list[Runtime], writers: list[GroupCommitWriter]
) -> None:
    """An update stored while the transaction ending its chat's last job has yet to commit
    (its freeing ran before the new job was linked): a claim meanwhile still sees that job
    running and leaves the new one alone rather than blocking it for ever (queue/store.py,
    `block`), so once the end commits the new job is claimable."""
    rt, writer = runtimes[0], writers[0]
    assert await writer.store(incoming(1)) is True
    [first] = await _claim(rt, "w1")
    async with rt.db.transaction() as ending:
        assert await job_store.complete(ending, first.id, worker_id="w1", now=NOW)
        assert await writer.store(incoming(2)) is True
        assert await _claim(rt, "w2") == []
    [second] = await _claim(rt, "w2")
    assert (second.after_id, second.payload["update_id"]) == (first.id, 2)


async def _claim(rt: Runtime, worker_id: str) -> list[Job]:
    return await job_store.claim(
        rt.db, worker_id=worker_id, limit=10, now=NOW, lease_seconds=60, queue=UPDATES_QUEUE
    )


def test_chats_spread_over_every_lane() -> None:
    """A chat's lane is a function of the bot and the chat (every copy of an update, every
    update of a chat, takes one); over many chats every lane gets some."""
    for lanes in (2, 3):
        taken = [lane_index(7, chat, lanes) for chat in [*range(-50, 50), None]]
        assert set(taken) == set(range(lanes))


async def test_one_update_pushed_to_two_processes_at_once_is_stored_once(
    runtimes: list[Runtime], writers: list[GroupCommitWriter]
) -> None:
    """The same updates stored through both processes at once: each is new to exactly one of
    them, stored once with one job, and the chat's jobs form one chain."""
    results = await asyncio.gather(
        *(writer.store(incoming(i)) for i in range(1, 31) for writer in writers)
    )
    assert [results[2 * i] + results[2 * i + 1] for i in range(30)] == [1] * 30
    assert await _stored_updates(runtimes[0]) == list(range(1, 31))
    chain, updates, newest = await _chain(runtimes[0], CHAT_KEY)
    assert (sorted(updates), newest) == (list(range(1, 31)), chain[-1])


async def test_a_batch_whose_connection_is_lost_midway_goes_again_on_a_new_one(
    runtimes: list[Runtime], writers: list[GroupCommitWriter]
) -> None:
    """A batch whose connection dies after its updates are inserted is rolled back and sent
    again on a new connection: stored once, each update new, its jobs in the chat's chain."""
    rt, writer = runtimes[0], writers[0]
    assert await writer.store(incoming(1)) is True
    async with _holding_key(rt, CHAT_KEY) as conn:
        batch = asyncio.create_task(writer.store_many([incoming(2), incoming(3)]))
        (pid,) = await _waiting(rt, 1)  # its updates are in; it waits for the chat's row
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await _waiting_on_another(rt, pid)
    assert await batch == [True, True]
    assert await _stored_updates(rt) == [1, 2, 3]
    chain, updates, newest = await _chain(rt, CHAT_KEY)
    assert (updates, newest) == ([1, 2, 3], chain[-1])


async def test_a_batch_that_loses_its_connection_twice_is_refused_whole(
    runtimes: list[Runtime], writers: list[GroupCommitWriter]
) -> None:
    """A batch that loses its second connection too fails (a 503, so Telegram sends again)
    and nothing of it stays; the next batch stores as if it never was."""
    rt, writer = runtimes[0], writers[0]
    assert await writer.store(incoming(1)) is True
    async with _holding_key(rt, CHAT_KEY) as conn:
        failing = asyncio.create_task(writer.store_many([incoming(2), incoming(3)]))
        (pid,) = await _waiting(rt, 1)
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        pid = await _waiting_on_another(rt, pid)
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # Bounded: a third try would wait for this transaction's lock for ever.
        with pytest.raises(errors.StorageUnavailable):
            async with asyncio.timeout(15):
                await failing
    assert await _stored_updates(rt) == [1]
    assert await writer.store_many([incoming(2), incoming(3)]) == [True, True]
    assert await _stored_updates(rt) == [1, 2, 3]
    chain, updates, newest = await _chain(rt, CHAT_KEY)
    assert (updates, newest) == ([1, 2, 3], chain[-1])


async def _waiting_on_another(rt: Runtime, gone: int) -> int:
    """The intake connection blocked on a lock once it is another than `gone`'s."""
    found: list[int] = []

    async def replaced() -> bool:
        found[:] = await _intake_backends_waiting_for_a_lock(rt)
        return len(found) == 1 and found[0] != gone

    await eventually(replaced)
    return found[0]
