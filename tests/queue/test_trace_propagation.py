"""A job runs in its trace: what it enqueues joins it, and its log context names it; run on
SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.log_fields import log_fields
from tests.queue.test_queue_worker import (
    START,
    enqueue,
    in_state,
    make_worker,
    running,
    wait_until,
)
from tgrelay import tracing
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.queue import store
from tgrelay.queue.models import Job, JobState, NewJob
from tgrelay.queue.worker import Registry
from tgrelay.testing.clock import Clock

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture
def clock() -> Clock:
    return Clock(start=START)


async def _traces(database: Database) -> dict[str, str | None]:
    """Each job's trace id, by the name in its payload."""
    async with database.engine.connect() as conn:
        rows = await conn.execute(select(tables.jobs.c.payload, tables.jobs.c.trace_id))
        return {orjson.loads(payload)["name"]: trace_id for payload, trace_id in rows}


async def test_a_job_enqueued_by_a_job_joins_its_trace(database: Database, clock: Clock) -> None:
    """The child of a traced job carries the parent's trace id; the child of an untraced one none;
    while each runs, its trace is current and bound for its log lines."""
    seen: dict[str, tuple[str | None, dict[str, Any]]] = {}

    async def spawn(conn: AsyncConnection, job: Job) -> None:
        name = job.payload["name"]
        seen[name] = (tracing.current_trace_id(), log_fields())
        await store.enqueue(
            conn,
            [NewJob(kind="child", payload={"name": f"{name}/child"})],
            now=clock(),
            default_max_attempts=3,
        )

    async def child(conn: AsyncConnection, job: Job) -> None:
        seen[job.payload["name"]] = (
            tracing.current_trace_id(),
            log_fields(),
        )

    registry = Registry()
    registry.register("spawn", spawn)
    registry.register("child", child)
    ids = await enqueue(
        database,
        NewJob(kind="spawn", payload={"name": "traced"}, trace_id=TRACE),
        NewJob(kind="spawn", payload={"name": "untraced"}),
        now=clock,
    )
    async with running(make_worker(database, registry, clock)):
        for job_id in ids:
            await wait_until(in_state(database, job_id, JobState.DONE))

        async def children_ran() -> bool:
            return len(seen) == 4

        await wait_until(children_ran)
    assert await _traces(database) == {
        "traced": TRACE,
        "traced/child": TRACE,
        "untraced": None,
        "untraced/child": None,
    }
    assert seen == {
        "traced": (TRACE, {"trace_id": TRACE}),
        "traced/child": (TRACE, {"trace_id": TRACE}),
        "untraced": (None, {}),
        "untraced/child": (None, {}),
    }


async def test_a_batch_of_traced_jobs_names_every_trace(database: Database, clock: Clock) -> None:
    """A batched handler given jobs of two traces logs both and has no single current trace;
    the worker's line for the batch's transaction names both too."""
    seen: list[tuple[str | None, dict[str, Any]]] = []

    async def prepare(jobs: Sequence[Job]) -> None:
        return None

    async def handle(conn: AsyncConnection, jobs: Sequence[Job], prepared: None) -> None:
        seen.append((tracing.current_trace_id(), log_fields()))

    registry = Registry()
    registry.register_batched("batched", handle, prepare=prepare)
    ids = await enqueue(
        database,
        NewJob(kind="batched", payload={"name": "a"}, trace_id=TRACE),
        NewJob(kind="batched", payload={"name": "b"}, trace_id=OTHER),
        now=clock,
    )
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, tracing.add_trace_id]
    ) as logged:
        async with running(make_worker(database, registry, clock, batch_size=10)):
            for job_id in ids:
                await wait_until(in_state(database, job_id, JobState.DONE))
    assert seen == [(None, {"trace_ids": [TRACE, OTHER]})]
    assert [line.get("trace_ids") for line in logged if line["event"] == "jobs.done"] == [
        [TRACE, OTHER]
    ]
