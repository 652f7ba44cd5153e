"""Re-planning the SLA timers of a desk's live tickets after its policy changed, a page at a
time: the first page in the change's own transaction, each further page in a
`support_sla_replan` job of its own.

Planning reads each ticket's history (~8 statements a ticket), so a desk with 10,000 open
tickets re-planned in one transaction would hold SQLite's only write lock for tens of
seconds while the intake waits. Pages bound each transaction; a small desk is re-planned
before the change answers. The jobs of one desk share an ordering key, so two quick changes
re-plan one after the other, each page under the policy as it is when the page runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.queue import store as job_store
from tgrelay.queue import worker
from tgrelay.queue.models import Job, NewJob
from tgrelay.runtime import Runtime
from tgrelay.support import sla_timer, ticket_store
from tgrelay.support.models import LIVE_STATUSES

SLA_REPLAN = "support_sla_replan"
PAGE = 200  # tickets a transaction re-plans: ~2 ms each on SQLite, so ~0.4 s at most


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """Where a re-plan goes on: the live status being walked and the last ticket number done
    in it (tickets are walked newest first; None: from the newest)."""

    workspace_id: str
    desk_id: str
    status_index: int = 0  # into LIVE_STATUSES
    before: int | None = None

    def payload(self) -> dict[str, object]:
        return {
            "workspace_id": self.workspace_id,
            "desk_id": self.desk_id,
            "status_index": self.status_index,
            "before": self.before,
        }

    @classmethod
    def of(cls, payload: dict[str, object]) -> Cursor:
        before = payload.get("before")
        return cls(
            workspace_id=str(payload["workspace_id"]),
            desk_id=str(payload["desk_id"]),
            status_index=int(str(payload["status_index"])),
            before=None if before is None else int(str(before)),
        )


async def replan(
    conn: AsyncConnection, rt: Runtime, workspace_id: str, desk_id: str, *, page: int = PAGE
) -> None:
    """Re-plan the desk's live tickets: the first page now, the rest in jobs."""
    await replan_from(conn, rt, Cursor(workspace_id=workspace_id, desk_id=desk_id), page=page)


async def replan_from(conn: AsyncConnection, rt: Runtime, cursor: Cursor, *, page: int) -> None:
    """Re-plan one page from `cursor`; queue the next page's job if any is left."""
    left = page
    status_index, before = cursor.status_index, cursor.before
    while status_index < len(LIVE_STATUSES):
        found = await ticket_store.list_tickets(
            conn,
            cursor.workspace_id,
            status=LIVE_STATUSES[status_index],
            desk_id=cursor.desk_id,
            before=before,
            limit=left,
        )
        for ticket in found:
            await sla_timer.plan(conn, rt, ticket)
        left -= len(found)
        if left == 0:
            # The page is full: the rest (if any) in a job of its own.
            following = Cursor(
                workspace_id=cursor.workspace_id,
                desk_id=cursor.desk_id,
                status_index=status_index,
                before=found[-1].number,
            )
            await _queue(conn, rt, following)
            return
        status_index, before = status_index + 1, None


async def _queue(conn: AsyncConnection, rt: Runtime, cursor: Cursor) -> None:
    await job_store.enqueue(
        conn,
        [
            NewJob(
                kind=SLA_REPLAN,
                payload=cursor.payload(),
                ordering_key=f"sla_replan:{cursor.desk_id}",
            )
        ],
        now=rt.clock(),
        default_max_attempts=rt.settings.job_max_attempts,
    )


def register(registry: worker.Registry, rt: Runtime) -> None:
    async def run(conn: AsyncConnection, job: Job) -> None:
        await replan_from(conn, rt, Cursor.of(job.payload), page=PAGE)

    registry.register(SLA_REPLAN, run)
