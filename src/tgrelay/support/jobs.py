"""The desk's timer: a resolved ticket closes by itself when its reopen window ends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.queue import store as job_store
from tgrelay.queue import worker
from tgrelay.queue.models import Job, NewJob
from tgrelay.runtime import Runtime

CLOSE_TICKET = "support_close_ticket"

# (conn, rt, ticket_id, resolved_at): `lifecycle.close_if_still_resolved`, given at register
# time so that this module and the use cases do not import each other.
Close = Callable[[AsyncConnection, Runtime, str, datetime], Awaitable[None]]


async def schedule_close(
    conn: AsyncConnection, rt: Runtime, ticket_id: str, resolved_at: datetime, *, run_at: datetime
) -> None:
    """Queue the close for `run_at`; it does nothing should the ticket be reopened or resolved
    again by then (the job carries the resolved_at it was queued for)."""
    await job_store.enqueue(
        conn,
        [
            NewJob(
                kind=CLOSE_TICKET,
                payload={"ticket_id": ticket_id, "resolved_at": resolved_at.isoformat()},
                run_at=run_at,
            )
        ],
        now=rt.clock(),
        default_max_attempts=rt.settings.job_max_attempts,
    )


def register(registry: worker.Registry, rt: Runtime, close: Close) -> None:
    async def run(conn: AsyncConnection, job: Job) -> None:
        await close(
            conn,
            rt,
            str(job.payload["ticket_id"]),
            datetime.fromisoformat(str(job.payload["resolved_at"])),
        )

    registry.register(CLOSE_TICKET, run)
