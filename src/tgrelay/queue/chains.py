"""The SQL of per-key ordering (see queue/links.py): linking new jobs, freeing successors.

A keyed job waits while its predecessor (`after_id`) is pending or running. Claims mark
such a job `blocked`, which takes it out of ix_jobs_ready; whatever ends its predecessor
(done, dead) sets it back in the same transaction. On PostgreSQL two claimers and a
finisher may race: claims lock their candidates (FOR UPDATE) and re-check the predecessor
in the statement that blocks, and freeing does not filter on `blocked`, so it waits for a
claimer's lock and then sees what that claimer wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import dialects, prepared, tables

job_keys = tables.job_keys
jobs = tables.jobs
# On PostgreSQL a new key's row is written first, then every key's row is locked: a
# placeholder id that no job has.
NO_JOB = 0


async def newest_jobs(conn: AsyncConnection, keys: Sequence[str | None]) -> dict[str, int]:
    """The newest job of each key, locked on PostgreSQL until the caller's transaction ends.

    The lock makes two transactions enqueueing for one key take turns, so the second links
    to the first's job. SQLite's writers take turns already (BEGIN IMMEDIATE).
    """
    wanted = sorted({key for key in keys if key is not None})  # sorted: locks in one order
    if not wanted:
        return {}
    query = select(job_keys.c.ordering_key, job_keys.c.last_job_id).where(
        job_keys.c.ordering_key.in_(wanted)
    )
    if conn.dialect.name == "postgresql":
        await conn.execute(
            dialects.upsert(conn.dialect.name, job_keys).on_conflict_do_nothing(
                index_elements=["ordering_key"]
            ),
            [{"ordering_key": key, "last_job_id": NO_JOB} for key in wanted],
        )
        query = query.order_by(job_keys.c.ordering_key).with_for_update()
    return {key: job_id for key, job_id in await conn.execute(query) if job_id != NO_JOB}


async def move_newest(conn: AsyncConnection, newest: Mapping[str, int]) -> None:
    """Record each key's newest job, after `newest_jobs` and the INSERT of the new jobs."""
    if not newest:
        return
    statement = dialects.upsert(conn.dialect.name, job_keys)
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["ordering_key"], set_={"last_job_id": statement.excluded.last_job_id}
        ),
        [{"ordering_key": key, "last_job_id": job_id} for key, job_id in sorted(newest.items())],
    )


async def free_successors(conn: AsyncConnection, finished_ids: Sequence[int]) -> None:
    """Let the jobs that waited for these (now done or dead) be claimed."""
    if finished_ids:
        statement = _FREEING_SQLITE if conn.dialect.name == "sqlite" else _FREEING_POSTGRES
        await statement(conn, {"finished": list(finished_ids)})


# Each pins the index that finds the successors (ix_jobs_after_id), as a planner left to
# itself took ix_jobs_state_run_at for `state = 'pending'`, walking every pending job: SQLite
# always (3.7 ms per commit of 34 jobs with 30k pending), PostgreSQL when planning from
# statistics taken before a burst. SQLite writes a row even when its values do not change,
# so the unblocked ones are left alone; on PostgreSQL `IS TRUE` makes the state a filter.
FREE_SQLITE = text(
    "UPDATE jobs INDEXED BY ix_jobs_after_id SET blocked = 0"
    " WHERE after_id IN :finished AND state = 'pending' AND blocked = 1"
).bindparams(bindparam("finished", expanding=True))
_FREE_POSTGRES = text(
    "UPDATE jobs SET blocked = 0 WHERE after_id IN :finished AND (state = 'pending') IS TRUE"
).bindparams(bindparam("finished", expanding=True))
_FREEING_SQLITE = prepared.Prepared(FREE_SQLITE)
_FREEING_POSTGRES = prepared.Prepared(_FREE_POSTGRES)
