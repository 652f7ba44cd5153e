"""Where lower layers' hooks meet the domains that listen (docs/design-notes.md, "Domain
order"): every entry point that builds a Runtime (the app, `tgrelay worker`, the CLI's use
cases) wires it here, so a change is followed whichever door it came in by; and the outbox,
which imports no domain, gets the bots' tokens and each domain's recipients here."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.bots import service as bots_service
from tgrelay.groups import delivery as groups_delivery
from tgrelay.groups import service as groups_service
from tgrelay.groups import suspension as groups_suspension
from tgrelay.runtime import Runtime
from tgrelay.support import handlers as support_handlers
from tgrelay.support import relay as support_relay
from tgrelay.telegram.outbox.registry import Outbox


def install(rt: Runtime) -> Runtime:
    """Add every domain listener to `rt`'s hooks; returns `rt`."""
    rt.hooks.add(bots_service.HOLD_CHANGED, groups_suspension.follow_hold)
    rt.hooks.add(groups_service.BARE_START_TAKEN, support_handlers.takes_bare_start)
    return rt


def outbox(rt: Runtime) -> Outbox:
    """The outbox as the domains configure it: the bots' tokens, then each domain's
    recipients and chat-fate hooks."""

    async def token_of(conn: AsyncConnection, bot_id: int) -> str:
        return await bots_service.read_token(conn, rt, bot_id)

    wired = Outbox(token_of=token_of)
    groups_delivery.install(wired, rt)
    support_relay.install(wired, rt)
    return wired
