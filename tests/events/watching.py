"""An endpoint that watches a workspace's events, read back through the events service.

What a subscriber is sent, body for body, without a receiver or a worker: the tests of the
domains that emit events (bots, groups, inbox) watch through it, so they hold whatever
module the emission moves to. The runtime must allow private targets (the endpoint's URL is
on loopback; no worker runs to call it).
"""

from __future__ import annotations

from typing import Any

import orjson

from tgrelay.events import service as events
from tgrelay.runtime import Runtime
from tgrelay.workspaces.models import Principal

WATCH_URL = "http://127.0.0.1:9/tgrelay-events"


async def watch(rt: Runtime, principal: Principal, *event_types: str) -> str:
    """An endpoint of the principal's workspace subscribed to `event_types` (none: all); its id."""
    created = await events.create_endpoint(
        rt, principal, url=WATCH_URL, event_types=list(event_types) or None, description="watch"
    )
    return created.endpoint.id


async def sent(rt: Runtime, workspace_id: str, endpoint_id: str) -> list[dict[str, Any]]:
    """Every body the endpoint is sent, oldest first."""
    deliveries = await events.list_deliveries(
        rt, workspace_id, endpoint_id, status=None, before=None, limit=1000
    )
    return [
        orjson.loads((await events.get_delivery(rt, workspace_id, delivery.public_id)).body)
        for delivery in reversed(deliveries)
    ]


def typed(bodies: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of each body: what a test asserts, without the random ids and times."""
    return [(body["type"], body["data"]) for body in bodies]
