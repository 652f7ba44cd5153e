"""Dispatch: each update of a batch goes to the domain handlers in their fixed order until
one consumes it; then the inbound events announce every update and who consumed it.

Runs in the process_update jobs' transaction (DESIGN, "Data flow"): handlers write their
effects, events and sends on the jobs' connection, so all of it commits once, with the jobs.
Handlers get the whole batch (less what an earlier handler consumed), in the order its
updates must be handled: a handler that needs one query per batch can have it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.inbox import announcements
from tgrelay.inbox.models import Handler, Inbound
from tgrelay.runtime import Runtime


async def dispatch(
    conn: AsyncConnection, rt: Runtime, batch: Sequence[Inbound], handlers: Sequence[Handler]
) -> dict[int, str]:
    """Run the handlers, then announce the batch; which handler consumed each update (by
    row id; an update nobody consumed is absent)."""
    consumed_by: dict[int, str] = {}
    remaining: Sequence[Inbound] = batch
    for handler in handlers:
        if not remaining:
            break
        taken = set(await handler.handle(conn, remaining))
        if taken:
            for inbound in remaining:
                if inbound.processed.row_id in taken:
                    consumed_by[inbound.processed.row_id] = handler.name
            remaining = [i for i in remaining if i.processed.row_id not in taken]
    await announcements.announce(conn, rt, batch, consumed_by)
    return consumed_by
