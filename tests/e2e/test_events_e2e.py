"""End to end: tgrelay's events reach customers' endpoints signed, retried, dead-lettered,
replayable, and never at the expense of healthy endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.receiver import Delivery, RunningReceiver, receiving

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN: dict[str, Any] = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
TEAM_CHAT: dict[str, Any] = {"id": -100777, "type": "supergroup", "title": "Team"}
# Fast enough for a test, the same shape as the real schedule.
FAST_SCHEDULE = [0, 0.2, 0.2, 0.2]


@pytest.fixture(params=["webhook", "polling"])
async def relay(
    request: pytest.FixtureRequest, emulator: RunningEmulator, tmp_path: Path
) -> AsyncIterator[Tgrelay]:
    port = free_port()
    marker = request.node.get_closest_marker("relay_settings")
    overrides: dict[str, Any] = {
        "webhooks_allow_private": True,  # the receivers listen on loopback
        "webhooks_retry_schedule": FAST_SCHEDULE,
        **(dict(marker.kwargs) if marker else {}),
    }
    settings = settings_for(
        emulator, tmp_path, webhook=request.param == "webhook", port=port, **overrides
    )
    async with running_tgrelay(settings, port) as relay:
        yield relay


async def _endpoint(relay: Tgrelay, url: str, **extra: Any) -> dict[str, Any]:
    response = await relay.api.post("/v1/endpoints", json={"url": url, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _deliveries(relay: Tgrelay, endpoint_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await relay.api.get(f"/v1/endpoints/{endpoint_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


async def _until_status(relay: Tgrelay, endpoint_id: str, status: str, count: int = 1) -> None:
    async def reached() -> bool:
        return len(await _deliveries(relay, endpoint_id, status=status)) >= count

    await eventually(reached)


def _verified(secret: str, delivery: Delivery) -> Any:
    """The body, if the standardwebhooks package's own verifier accepts the delivery."""
    return Webhook(secret).verify(delivery.body, delivery.headers)


async def _message(relay: Tgrelay, emulator: RunningEmulator, text: str = "hello") -> int:
    bot = emulator.emulator.create_bot("events_bot")
    await relay.connect_bot(bot.token)
    emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, text)
    return bot.id


async def test_message_reaches_the_endpoint_signed_once(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A Telegram message becomes one message.received delivery that the reference verifier accepts."""
    async with receiving() as receiver:
        endpoint = await _endpoint(relay, receiver.url, event_types=["message.received"])
        bot_id = await _message(relay, emulator, "the deploy is stuck")
        [delivery] = await receiver.receiver.wait_for(1)
        body = _verified(endpoint["secret"], delivery)
        await _until_status(relay, endpoint["id"], "delivered")
        await asyncio.sleep(0.5)  # room for a duplicate to show up, if one were sent

    assert len(receiver.receiver.deliveries) == 1
    assert delivery.headers["webhook-id"] == body["id"]
    assert delivery.headers["content-type"] == "application/json"
    assert body["type"] == "message.received"
    assert body["workspace_id"] == relay.workspace_id
    data = body["data"]
    assert (data["bot_id"], data["chat"]["id"], data["from"]["id"], data["text"]) == (
        bot_id,
        TEAM_CHAT["id"],
        ANN["id"],
        "the deploy is stuck",
    )
    assert data["message"]["text"] == "the deploy is stuck"


async def test_endpoint_down_for_a_while_gets_the_event_when_it_returns(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Failed attempts are retried on the schedule, with the same webhook-id, until one succeeds."""

    async def down_twice(delivery: Delivery) -> int:
        return 503 if len(received) <= 2 else 200

    async with receiving(down_twice) as receiver:
        received = receiver.receiver.deliveries
        endpoint = await _endpoint(relay, receiver.url, event_types=["message.received"])
        await _message(relay, emulator)
        await receiver.receiver.wait_for(3)
        await _until_status(relay, endpoint["id"], "delivered")

    assert len({d.headers["webhook-id"] for d in received}) == 1
    [delivery] = await _deliveries(relay, endpoint["id"])
    detail = (await relay.api.get(f"/v1/deliveries/{delivery['id']}")).json()
    assert [(a["status_code"], a["succeeded"]) for a in detail["attempt_history"]] == [
        (503, False),
        (503, False),
        (200, True),
    ]
    assert detail["attempts"] == 3


async def test_dead_letter_is_replayed_after_the_endpoint_recovers(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """An endpoint failing through the whole schedule gets a dead letter, and replay delivers it."""
    healthy = False

    async def broken_until_fixed(delivery: Delivery) -> int:
        return 200 if healthy else 500

    started = datetime.now(UTC) - timedelta(seconds=1)
    async with receiving(broken_until_fixed) as receiver:
        endpoint = await _endpoint(relay, receiver.url, event_types=["message.received"])
        await _message(relay, emulator)
        await _until_status(relay, endpoint["id"], "dead_letter")
        [dead] = await _deliveries(relay, endpoint["id"])
        assert dead["attempts"] == len(FAST_SCHEDULE)
        assert "retry schedule exhausted" in dead["last_error"]

        healthy = True
        response = await relay.api.post(
            f"/v1/endpoints/{endpoint['id']}/replay",
            json={"since": started.isoformat(), "status": "dead_letter"},
        )
        assert response.json() == {"replayed": 1}
        await _until_status(relay, endpoint["id"], "delivered")

    last = receiver.receiver.deliveries[-1]
    assert last.headers["webhook-id"] == dead["event_id"]
    assert _verified(endpoint["secret"], last)["type"] == "message.received"


async def test_gone_disables_the_endpoint_and_says_so(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A 410 disables the endpoint at once, and endpoint.disabled reaches the other endpoints."""

    async def gone(delivery: Delivery) -> int:
        return 410

    async with receiving(gone) as leaving, receiving() as watcher:
        doomed = await _endpoint(relay, leaving.url, event_types=["message.received"])
        watching = await _endpoint(relay, watcher.url, event_types=["endpoint.disabled"])
        await _message(relay, emulator)
        [notice] = await watcher.receiver.wait_for(1)

    body = _verified(watching["secret"], notice)
    assert body["type"] == "endpoint.disabled"
    assert body["data"] == {
        "endpoint_id": doomed["id"],
        "url": doomed["url"],
        "reason": "the endpoint answered 410 Gone",
    }
    state = (await relay.api.get(f"/v1/endpoints/{doomed['id']}")).json()
    assert (state["status"], state["disabled_reason"]) == (
        "disabled",
        "the endpoint answered 410 Gone",
    )
    assert len(leaving.receiver.deliveries) == 1


async def test_both_secrets_sign_during_a_rotation(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """After rotate-secret, deliveries carry two signatures: old and new verifiers both accept."""
    async with receiving() as receiver:
        endpoint = await _endpoint(relay, receiver.url, event_types=["message.received"])
        rotated = (await relay.api.post(f"/v1/endpoints/{endpoint['id']}/rotate-secret")).json()
        await _message(relay, emulator)
        [delivery] = await receiver.receiver.wait_for(1)

    assert rotated["secret"] != endpoint["secret"]
    assert rotated["previous_secret_expires_at"] is not None
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    assert _verified(endpoint["secret"], delivery) == _verified(rotated["secret"], delivery)
