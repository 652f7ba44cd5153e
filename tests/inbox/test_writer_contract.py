"""The group-commit writer's contract, on SQLite and PostgreSQL: stored once, job included."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from tests.databases import PostgresServer
from tests.e2e.harness import eventually
from tests.inbox.updates import NOW, incoming
from tests.listening import Heard, listening
from tgrelay import audit
from tgrelay.db import tables
from tgrelay.inbox import rejections
from tgrelay.inbox.writer import UPDATES_QUEUE, GroupCommitWriter
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def runtime(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer
) -> AsyncIterator[Runtime]:
    keys = (SecretStr(Fernet.generate_key().decode()),)
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path, secret_keys=keys)
        async with open_runtime(settings, clock=lambda: NOW) as rt:
            yield rt
        return
    async with postgres.fresh_database() as url:
        settings = Settings(data_dir=tmp_path, database_url=url, secret_keys=keys)
        async with open_runtime(settings, clock=lambda: NOW) as rt:
            yield rt


@pytest.fixture
async def writer(runtime: Runtime) -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(runtime)
    task = asyncio.create_task(writer.run())
    yield writer
    await writer.stop()
    await task


async def _stored(rt: Runtime) -> list[tuple[int, int, str | None, str]]:
    """(update_id, job subject row id matches, ordering key, job state) per stored update."""
    u, j = tables.updates, tables.jobs
    async with rt.db.engine.connect() as conn:
        rows = await conn.execute(
            select(u.c.update_id, u.c.bot_id, j.c.ordering_key, j.c.state)
            .select_from(u.join(j, j.c.subject_id == u.c.id))
            .where(j.c.kind == "process_update")
            .order_by(u.c.bot_id, u.c.update_id)
        )
        return [(r.update_id, r.bot_id, r.ordering_key, r.state) for r in rows]


async def test_concurrent_updates_are_stored_with_one_job_each(
    runtime: Runtime, writer: GroupCommitWriter
) -> None:
    """Updates stored concurrently each get exactly one pending process_update job, keyed by chat."""
    results = await asyncio.gather(
        *(writer.store(incoming(i, chat_id=i % 3)) for i in range(1, 51)),
        writer.store(incoming(7, chat_id=None, bot_id=2)),
    )
    assert results == [True] * 51
    assert await _stored(runtime) == [
        *[(i, 1, f"chat:1:{i % 3}", "pending") for i in range(1, 51)],
        (7, 2, None, "pending"),
    ]


async def test_duplicates_are_absorbed_within_and_across_batches(
    runtime: Runtime, writer: GroupCommitWriter
) -> None:
    """A re-sent update_id, in the same batch or a later one, is reported as not new and adds nothing."""
    same_batch = await asyncio.gather(writer.store(incoming(1)), writer.store(incoming(1)))
    later = await writer.store(incoming(1))
    many = await writer.store_many([incoming(1), incoming(2), incoming(2)])
    assert (list(same_batch), later, many) == ([True, False], False, [False, True, False])
    assert await _stored(runtime) == [
        (1, 1, "chat:1:10", "pending"),
        (2, 1, "chat:1:10", "pending"),
    ]


async def test_each_chats_jobs_follow_one_another_within_and_across_batches(
    runtime: Runtime, writer: GroupCommitWriter
) -> None:
    """A batch's first job of a chat follows the chat's newest job from before, each later
    one the job before it in the batch; a job without a chat follows none. Each job names
    its update in its payload."""
    await writer.store_many([incoming(1, chat_id=10), incoming(2, chat_id=20)])
    await writer.store_many(
        [
            incoming(3, chat_id=10),
            incoming(4, chat_id=30),
            incoming(5, chat_id=None),
            incoming(6, chat_id=10),
            incoming(7, chat_id=30),
            incoming(8, chat_id=20),
        ]
    )
    u, j = tables.updates, tables.jobs
    async with runtime.db.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(u.c.update_id, j.c.id, j.c.after_id, j.c.payload)
                .select_from(u.join(j, j.c.subject_id == u.c.id))
                .order_by(u.c.update_id)
            )
        ).all()
        newest = dict(
            (
                await conn.execute(
                    select(tables.job_keys.c.ordering_key, tables.job_keys.c.last_job_id)
                )
            ).all()
        )
    job_of = {update_id: job_id for update_id, job_id, _, _ in rows}
    follows = {update_id: after_id for update_id, _, after_id, _ in rows}
    assert follows == {
        1: None,
        2: None,
        3: job_of[1],
        4: None,
        5: None,
        6: job_of[3],
        7: job_of[4],
        8: job_of[2],
    }
    assert newest == {"chat:1:10": job_of[6], "chat:1:20": job_of[8], "chat:1:30": job_of[7]}
    assert [json.loads(payload) for *_, payload in rows] == [
        {"bot_id": 1, "update_id": update_id} for update_id in range(1, 9)
    ]


async def test_audit_rows_are_committed_without_an_update_to_carry_them(
    runtime: Runtime, writer: GroupCommitWriter
) -> None:
    """Audit entries queued by the intake (a rejected request's) are committed on their own."""
    writer.record_audit(
        audit.Entry(
            action="intake.rejected", actor=audit.TELEGRAM, at=NOW, bot_id=1, detail={"status": 401}
        )
    )

    async def audited() -> bool:
        async with runtime.db.engine.connect() as conn:
            rows = await conn.execute(select(tables.audit_log.c.action, tables.audit_log.c.detail))
            return [tuple(r) for r in rows] == [("intake.rejected", '{"status":401}')]

    await eventually(audited)


async def test_tallied_audit_entries_add_their_counts_into_one_row(
    runtime: Runtime, writer: GroupCommitWriter
) -> None:
    """Flushes of the rejection tally for one key, in one commit or in later ones, leave a single row whose count is their sum."""
    tally = rejections.RejectionTally()

    def reject(times: int, remote_addr: str) -> None:
        for _ in range(times):
            tally.add(
                now=NOW,
                bot_id=1,
                workspace_id=None,
                status=401,
                reason="unknown bot or wrong secret token",
                remote_addr=remote_addr,
                forged=False,
            )

    log = tables.audit_log
    minute = NOW.replace(second=0, microsecond=0)

    async def rows_are(expected: list[tuple[str, int, datetime]]) -> None:
        async def found() -> bool:
            async with runtime.db.engine.connect() as conn:
                rows = await conn.execute(
                    select(log.c.remote_addr, log.c.count, log.c.created_at).order_by(log.c.id)
                )
                return [tuple(r) for r in rows] == expected

        await eventually(found)

    reject(3, "203.0.113.7")
    first = tally.drain()
    reject(2, "203.0.113.7")
    writer.record_audits(first)  # two flushes of one key in one commit
    writer.record_audits(tally.drain())
    await rows_are([("203.0.113.7", 5, minute)])
    reject(4, "203.0.113.7")
    reject(1, "198.51.100.1")
    writer.record_audits(tally.drain())  # and a later one
    await rows_are([("203.0.113.7", 9, minute), ("198.51.100.1", 1, minute)])


async def test_each_stored_update_and_its_job_carry_the_updates_trace_id(
    runtime: Runtime, writer: GroupCommitWriter
) -> None:
    """Each stored update gets a trace id of its own, on its row and on its process_update
    job; a duplicate arriving later changes neither."""
    await asyncio.gather(*(writer.store(incoming(i, chat_id=i % 2)) for i in range(1, 4)))
    first = await _traces(runtime)
    assert await writer.store(incoming(2, chat_id=0)) is False
    assert [(update_id, row == job) for update_id, row, job in first] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert len({row for _, row, _ in first}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", row or "") for _, row, _ in first)
    assert await _traces(runtime) == first


async def _traces(rt: Runtime) -> list[tuple[int, str | None, str | None]]:
    """(update_id, the update row's trace id, its job's) per stored update."""
    u, j = tables.updates, tables.jobs
    async with rt.db.engine.connect() as conn:
        rows = await conn.execute(
            select(u.c.update_id, u.c.trace_id, j.c.trace_id.label("job_trace_id"))
            .select_from(u.join(j, j.c.subject_id == u.c.id))
            .where(j.c.kind == "process_update")
            .order_by(u.c.update_id)
        )
        return [(r.update_id, r.trace_id, r.job_trace_id) for r in rows]


@pytest.mark.postgres
async def test_a_batch_on_postgres_wakes_the_updates_workers_of_other_processes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """The group commit announces the updates queue with its batch: a worker process beside
    this API process is woken by it, without looking."""
    keys = (SecretStr(Fernet.generate_key().decode()),)
    async with postgres.fresh_database() as url:
        settings = Settings(data_dir=tmp_path, database_url=url, secret_keys=keys)
        async with open_runtime(settings, clock=lambda: NOW) as rt:
            heard = Heard()
            async with listening(rt.db, heard):
                writer = GroupCommitWriter(rt)
                task = asyncio.create_task(writer.run())
                try:
                    assert await writer.store(incoming(1, chat_id=1)) is True
                    await heard.until(lambda: heard.queues == [UPDATES_QUEUE])
                finally:
                    await writer.stop()
                    await task
