"""The process_update job: one per stored update, run by the worker in per-chat order."""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.inbox import processing
from tgrelay.inbox.writer import PROCESS_UPDATE
from tgrelay.queue.models import Job
from tgrelay.queue.retry import PermanentFailure
from tgrelay.queue.worker import Registry
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)


def register(
    registry: Registry, rt: Runtime, handlers: Sequence[processing.UpdateHandler] = ()
) -> None:
    """Register process_update; `handlers` are the domain handlers, in the order they run."""

    async def process_update(conn: AsyncConnection, job: Job) -> None:
        if job.subject_id is None:
            raise PermanentFailure("process_update job without an update row")
        processed = await processing.process(
            conn, update_row_id=job.subject_id, handlers=handlers, now=rt.clock()
        )
        log.info(
            "update.processed",
            bot_id=processed.bot_id,
            update_id=processed.update_id,
            kind=processed.kind.value,
        )

    registry.register(PROCESS_UPDATE, process_update)
