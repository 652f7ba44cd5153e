"""Where a lower domain's hooks meet the higher domains that listen (docs/design-notes.md,
"Domain order"): every entry point that builds a Runtime (the app, `tgrelay worker`, the CLI's
use cases) wires it here, so a change is followed whichever door it came in by."""

from __future__ import annotations

from tgrelay.bots import service as bots_service
from tgrelay.groups import suspension as groups_suspension
from tgrelay.runtime import Runtime


def install(rt: Runtime) -> Runtime:
    """Add every domain listener to `rt`'s hooks; returns `rt`."""
    rt.hooks.add(bots_service.HOLD_CHANGED, groups_suspension.follow_hold)
    return rt
