"""The process_update job: one per stored update, run by the updates queue's batching worker
in per-chat order, many to a transaction."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.bots import service as bots_service
from tgrelay.inbox import processing, screening, telemetry
from tgrelay.inbox.writer import PROCESS_UPDATE
from tgrelay.queue.models import Job
from tgrelay.queue.retry import PermanentFailure
from tgrelay.queue.worker import Registry
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)


def register(
    registry: Registry, rt: Runtime, handlers: Sequence[processing.UpdatesHandler] = ()
) -> None:
    """Register process_update; `handlers` are the domain handlers, in the order they run,
    given the updates the inbound limits let through."""
    screen = screening.screen_of(rt)

    async def load(jobs: Sequence[Job]) -> list[processing.ProcessedUpdate]:
        row_ids = [job.subject_id for job in jobs]
        if None in row_ids:
            raise PermanentFailure("process_update job without an update row")
        return await processing.load(rt.db, [row_id for row_id in row_ids if row_id is not None])

    async def process_updates(
        conn: AsyncConnection, jobs: Sequence[Job], batch: list[processing.ProcessedUpdate]
    ) -> None:
        telemetry.after_processing(conn, rt, batch)
        batch = await _of_current_holders(conn, batch)
        admitted = batch if screen is None else await screen(conn, batch)
        await processing.handle_many(conn, admitted, handlers=handlers, now=rt.clock())
        log.debug(
            "updates.processed",
            count=len(batch),
            update_ids=[processed.update_id for processed in batch],
        )

    registry.register_batched(PROCESS_UPDATE, process_updates, prepare=load)


async def _of_current_holders(
    conn: AsyncConnection, batch: list[processing.ProcessedUpdate]
) -> list[processing.ProcessedUpdate]:
    """The updates received while the workspace holding their bot now held it.

    An update still waiting when another workspace connected the bot belongs to the one
    before: it is not handed to the new holder's handlers (nor announced to it), and the
    one before no longer has the bot. Its job simply finishes.
    """
    since = await bots_service.connected_since(conn, {p.bot_id for p in batch})
    kept, skipped = [], []
    for processed in batch:
        bound = since.get(processed.bot_id)
        if bound is None or processed.received_at >= bound:
            kept.append(processed)
        else:
            skipped.append(processed.update_id)
    if skipped:
        log.info("updates.previous_holder_skipped", update_ids=skipped)
    return kept
