"""An endpoint that watches a running tgrelay's events, read back through the public API.

The bodies an endpoint is sent come from `GET /v1/deliveries/{id}` (byte for byte what it
receives), so a test of a whole flow can assert its events without a receiver. The relay
must allow private targets: the endpoint's URL is a closed loopback port, so its attempts
fail quietly and are retried, which changes no body.
"""

from __future__ import annotations

from typing import Any

import orjson

from .harness import Tgrelay, eventually

WATCH_URL = "http://127.0.0.1:9/tgrelay-events"


async def watch(relay: Tgrelay, *event_types: str) -> str:
    """An endpoint subscribed to `event_types` (none: all); its id."""
    response = await relay.api.post(
        "/v1/endpoints", json={"url": WATCH_URL, "event_types": list(event_types) or None}
    )
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["id"]
    return endpoint_id


async def sent(relay: Tgrelay, endpoint_id: str, event_type: str) -> list[dict[str, Any]]:
    """The bodies of `event_type` the endpoint is sent, oldest first."""
    response = await relay.api.get(f"/v1/endpoints/{endpoint_id}/deliveries", params={"limit": 100})
    assert response.status_code == 200, response.text
    bodies = []
    for delivery in reversed(response.json()["deliveries"]):
        if delivery["event_type"] == event_type:
            detail = await relay.api.get(f"/v1/deliveries/{delivery['id']}")
            bodies.append(orjson.loads(detail.json()["body"]))
    return bodies


async def until_sent(
    relay: Tgrelay, endpoint_id: str, event_type: str, count: int = 1
) -> list[dict[str, Any]]:
    """The bodies of `event_type` once at least `count` are there."""

    async def arrived() -> bool:
        return len(await sent(relay, endpoint_id, event_type)) >= count

    await eventually(arrived)
    return await sent(relay, endpoint_id, event_type)
