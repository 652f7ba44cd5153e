"""The process_update job: one per stored update, run by the updates queue's batching worker
in per-chat order, many to a transaction."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.bots import service as bots_service
from tgrelay.inbox import dispatch, processing, screening, telemetry
from tgrelay.inbox.models import PROCESS_UPDATE, Handler, Inbound, ProcessedUpdate
from tgrelay.queue.models import Job
from tgrelay.queue.retry import PermanentFailure
from tgrelay.queue.worker import Registry
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)


def register(registry: Registry, rt: Runtime, handlers: Sequence[Handler] = ()) -> None:
    """Register process_update; `handlers` are the domain handlers, in the order they run,
    given the updates the inbound limits let through."""
    screen = screening.screen_of(rt)

    async def load(jobs: Sequence[Job]) -> list[ProcessedUpdate]:
        row_ids = [job.subject_id for job in jobs]
        if None in row_ids:
            raise PermanentFailure("process_update job without an update row")
        return await processing.load(rt.db, [row_id for row_id in row_ids if row_id is not None])

    async def process_updates(
        conn: AsyncConnection, jobs: Sequence[Job], batch: list[ProcessedUpdate]
    ) -> None:
        telemetry.after_processing(conn, rt, batch)
        held = await _of_current_holders(conn, batch)
        admitted = [inbound.processed for inbound in held]
        if screen is not None:
            admitted = await screen(conn, admitted)
            kept = {processed.row_id for processed in admitted}
            held = [inbound for inbound in held if inbound.processed.row_id in kept]
        await processing.record_participants(conn, admitted, now=rt.clock())
        await dispatch.dispatch(conn, rt, held, handlers)
        log.debug(
            "updates.processed",
            count=len(batch),
            update_ids=[processed.update_id for processed in batch],
        )

    registry.register_batched(PROCESS_UPDATE, process_updates, prepare=load)


async def _of_current_holders(
    conn: AsyncConnection, batch: Sequence[ProcessedUpdate]
) -> list[Inbound]:
    """The updates received while the workspace holding their bot now held it, each with its
    bot's holding (one query for the batch).

    An update still waiting when another workspace connected the bot belongs to the one
    before: it is not handed to the new holder's handlers (nor announced to it), and the
    one before no longer has the bot. An update of a bot nobody holds (its row is gone) has
    nobody to hand it to. Either way its job simply finishes.
    """
    holdings = await bots_service.holdings(conn, {p.bot_id for p in batch})
    kept: list[Inbound] = []
    skipped: list[int] = []
    for processed in batch:
        holding = holdings.get(processed.bot_id)
        if holding is not None and processed.received_at >= holding.connected_since:
            kept.append(Inbound(processed=processed, bot=holding))
        else:
            skipped.append(processed.update_id)
    if skipped:
        log.info("updates.previous_holder_skipped", update_ids=skipped)
    return kept
