"""End to end: tgrelay's events reach customers' endpoints signed, retried, dead-lettered,
replayable, and never at the expense of healthy endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.receiver import Delivery, receiving

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


async def test_every_secret_rotated_within_the_overlap_keeps_signing(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Two rotations inside the overlap: deliveries carry three signatures, and each of the
    three secrets' verifiers accepts them (the first old one is not dropped early)."""
    async with receiving() as receiver:
        endpoint = await _endpoint(relay, receiver.url, event_types=["message.received"])
        path = f"/v1/endpoints/{endpoint['id']}/rotate-secret"
        first = (await relay.api.post(path)).json()
        second = (await relay.api.post(path)).json()
        await _message(relay, emulator)
        [delivery] = await receiver.receiver.wait_for(1)

    secrets = [endpoint["secret"], first["secret"], second["secret"]]
    assert len(set(secrets)) == 3
    assert len(delivery.headers["webhook-signature"].split(" ")) == 3
    assert [_verified(secret, delivery) for secret in secrets] == [
        _verified(second["secret"], delivery)
    ] * 3


@pytest.mark.relay_settings(webhooks_timeout_seconds=3, webhooks_concurrency_per_endpoint=4)
async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """While one endpoint hangs past the timeout, another gets every event before a single
    hanging request has even timed out, and the hanging one never holds more than its share."""
    release = asyncio.Event()

    async def hang(delivery: Delivery) -> int:
        await release.wait()
        return 200

    async with receiving(hang) as slow, receiving() as healthy:
        stuck = await _endpoint(relay, slow.url, event_types=["message.received"])
        await _endpoint(relay, healthy.url, event_types=["message.received"])
        bot = emulator.emulator.create_bot("events_bot")
        await relay.connect_bot(bot.token)
        for number in range(20):
            emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, f"event {number}")
        await healthy.receiver.wait_for(20, timeout=15)
        attempts_while_hanging = [
            d["attempts"] for d in await _deliveries(relay, stuck["id"], limit=100)
        ]
        peak = slow.receiver.peak_in_flight
        release.set()

    assert attempts_while_hanging == [0] * 20  # no hanging request had timed out yet
    assert peak == 4  # TGRELAY_WEBHOOKS_CONCURRENCY_PER_ENDPOINT
    assert len({d.headers["webhook-id"] for d in healthy.receiver.deliveries}) == 20


async def test_endpoint_urls_are_checked_and_workspaces_are_isolated(
    relay: Tgrelay,
) -> None:
    """Unusable URLs are refused with their reason, and another workspace's ids are 404."""
    refused = await relay.api.post("/v1/endpoints", json={"url": "ftp://example.com/hook"})
    unknown_type = await relay.api.post(
        "/v1/endpoints", json={"url": "http://127.0.0.1:9/hook", "event_types": ["nope.nothing"]}
    )
    mine = await _endpoint(relay, "http://127.0.0.1:9/hook")
    rt = relay.runtime
    from tgrelay.workspaces import service as workspaces

    _, other_key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    async with httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {other_key}"}
    ) as other:
        answers = [
            (await other.get(f"/v1/endpoints/{mine['id']}")).status_code,
            (
                await other.patch(f"/v1/endpoints/{mine['id']}", json={"description": "x"})
            ).status_code,
            (await other.delete(f"/v1/endpoints/{mine['id']}")).status_code,
            (await other.post(f"/v1/endpoints/{mine['id']}/rotate-secret")).status_code,
            (await other.get(f"/v1/endpoints/{mine['id']}/deliveries")).status_code,
            (
                await other.post(
                    f"/v1/endpoints/{mine['id']}/replay", json={"since": "2026-01-01T00:00:00Z"}
                )
            ).status_code,
        ]
        listed = (await other.get("/v1/endpoints")).json()

    assert refused.status_code == 422
    assert "scheme" in refused.json()["detail"]
    assert unknown_type.status_code == 422
    assert "nope.nothing" in unknown_type.json()["detail"]
    assert mine["secret"].startswith("whsec_")
    assert answers == [404] * 6
    assert listed == []


@pytest.mark.parametrize("relay", ["polling"], indirect=True)  # the intake mode is not the point
async def test_edits_and_button_presses_arrive_and_a_pinned_endpoint_gets_its_version(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A message, its edit and a button press reach an unpinned endpoint as message.received,
    message.edited and callback.received in their latest version (consumed_by included),
    while an endpoint pinned to message.received version 1 gets that message without
    consumed_by, as version 1, signed as sent."""
    async with receiving() as pinned_receiver, receiving() as latest_receiver:
        pinned = await _endpoint(
            relay,
            pinned_receiver.url,
            event_types=["message.received"],
            versions={"message.received": 1},
        )
        latest = await _endpoint(
            relay, latest_receiver.url, event_types=["message.*", "callback.received"]
        )
        bot = emulator.emulator.create_bot("events_bot")
        await relay.connect_bot(bot.token)
        sent = emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, "the deploy is stuck")
        message = sent["message"]
        # Each chat's updates are handled in order, so these follow the message.
        emulator.emulator.inject_update(
            bot.id,
            {"edited_message": {**message, "edit_date": message["date"] + 60, "text": "fixed"}},
        )
        bot_user = {"id": bot.id, "is_bot": True, "first_name": bot.first_name}
        press = {
            "id": "4382bfdwdsb323b2d9",
            "from": ANN,
            "chat_instance": "-8123456789",
            "data": "ack:17",
            "message": {
                "message_id": 900,
                "from": bot_user,
                "chat": TEAM_CHAT,
                "date": message["date"],
                "text": "incident 17",
            },
        }
        emulator.emulator.inject_update(bot.id, {"callback_query": press})
        [old] = await pinned_receiver.receiver.wait_for(1)
        received = await latest_receiver.receiver.wait_for(3)

    old_body = _verified(pinned["secret"], old)
    by_type = {body["type"]: body for body in (_verified(latest["secret"], d) for d in received)}
    new_body = by_type["message.received"]
    assert old_body == {
        **new_body,
        "version": 1,
        "data": {key: value for key, value in new_body["data"].items() if key != "consumed_by"},
    }
    assert "consumed_by" in new_body["data"]  # which handler consumed it is the dispatch's to say
    assert [by_type[name]["version"] for name in sorted(by_type)] == [2, 2, 2]
    assert (new_body["data"]["message_id"], new_body["data"]["text"]) == (
        message["message_id"],
        "the deploy is stuck",
    )
    # The lifted essentials name every documented field, null when Telegram left it out.
    chat_ref = {**TEAM_CHAT, "username": None}
    ann_ref = {**ANN, "last_name": None, "language_code": None}
    edited = by_type["message.edited"]["data"]
    assert (edited["bot_id"], edited["message_id"], edited["chat"], edited["text"]) == (
        bot.id,
        message["message_id"],
        chat_ref,
        "fixed",
    )
    assert edited["message"]["edit_date"] == message["date"] + 60
    pressed = by_type["callback.received"]["data"]
    assert {key: value for key, value in pressed.items() if key != "consumed_by"} == {
        "bot_id": bot.id,
        "update_id": pressed["update_id"],
        "callback_query_id": "4382bfdwdsb323b2d9",
        "from": ann_ref,
        "data": "ack:17",
        "chat": chat_ref,
        "message_id": 900,
        "callback_query": press,
    }
    shown = (await relay.api.get(f"/v1/endpoints/{pinned['id']}")).json()
    assert (pinned["versions"], shown["versions"], latest["versions"]) == (
        {"message.received": 1},
        {"message.received": 1},
        {},
    )
