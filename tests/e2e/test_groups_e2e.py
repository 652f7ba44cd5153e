"""End to end, both delivery modes: linking a Telegram group by deep link, then alerting it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tgrelay.db import tables
from tgrelay.groups import handlers, legacy_sends
from tgrelay.groups import store as groups_store
from tgrelay.groups.models import Notification, NotificationStatus
from tgrelay.queue import store as job_store
from tgrelay.queue.models import DEFAULT_QUEUE, NewJob
from tgrelay.testing.emulator import flood
from tgrelay.testing.emulator.state import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for
from .watched import until_sent, watch

ANN: dict[str, Any] = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}


@pytest.fixture(params=["webhook", "polling"])
async def relay(
    request: pytest.FixtureRequest, emulator: RunningEmulator, tmp_path: Path
) -> AsyncIterator[Tgrelay]:
    port = free_port()
    settings = settings_for(
        emulator, tmp_path, webhook=request.param == "webhook", port=port, **_overrides(request)
    )
    async with running_tgrelay(settings, port) as relay:
        yield relay


def _overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("relay_settings")
    # tests.e2e.watched's endpoint is on loopback
    return {"webhooks_allow_private": True, **(marker.kwargs if marker else {})}


async def _bot(relay: Tgrelay, emulator: RunningEmulator) -> BotRecord:
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    return bot


async def _session(relay: Tgrelay, bot_id: int, **extra: Any) -> dict[str, Any]:
    response = await relay.api.post("/v1/connect-sessions", json={"bot_id": bot_id, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _session_state(relay: Tgrelay, session_id: str) -> dict[str, Any]:
    response = await relay.api.get(f"/v1/connect-sessions/{session_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _until_state(relay: Tgrelay, session_id: str, state: str) -> dict[str, Any]:
    async def reached() -> bool:
        return bool((await _session_state(relay, session_id))["state"] == state)

    await eventually(reached)
    return await _session_state(relay, session_id)


async def _texts(emulator: RunningEmulator, chat_id: int) -> list[str]:
    return [m["text"] for m in emulator.emulator.sent_messages(chat_id)]


async def _until_texts(emulator: RunningEmulator, chat_id: int, count: int) -> list[str]:
    async def arrived() -> bool:
        return len(await _texts(emulator, chat_id)) >= count

    await eventually(arrived)
    return await _texts(emulator, chat_id)


async def _connected_group(
    relay: Tgrelay, emulator: RunningEmulator, bot: BotRecord, *, chat_type: str = "supergroup"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run both phases with Ann; the group chat and the connection."""
    session = await _session(relay, bot.id)
    emulator.emulator.send_message(bot.id, ANN, None, f"/start {session['token']}")
    await _until_state(relay, session["id"], "waiting_group")
    chat = emulator.emulator.create_chat(chat_type, "Ops alerts")
    emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
    done = await _until_state(relay, session["id"], "connected")
    return chat, done["connection"]


async def _audit_actions(relay: Tgrelay) -> list[str]:
    async with relay.runtime.db.engine.connect() as conn:
        rows = await conn.execute(select(tables.audit_log.c.action).order_by(tables.audit_log.c.id))
        return [row.action for row in rows]


async def _notify(relay: Tgrelay, connection_id: str, text: str, **extra: Any) -> httpx.Response:
    return await relay.api.post(
        "/v1/notifications", json={"connection_id": connection_id, "text": text, **extra}
    )


async def _until_notification(relay: Tgrelay, notification_id: str) -> dict[str, Any]:
    async def settled() -> bool:
        found = await relay.api.get(f"/v1/notifications/{notification_id}")
        return bool(found.json()["status"] != "queued")

    await eventually(settled)
    body: dict[str, Any] = (await relay.api.get(f"/v1/notifications/{notification_id}")).json()
    return body


async def test_same_user_links_a_group_in_two_phases(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """/start with the token verifies Ann, the bot answers with an add-to-group button, and
    Ann adding the bot to a group connects it, posts a confirmation there and sends
    group.connected."""
    watcher = await watch(relay, "group.*")
    bot = await _bot(relay, emulator)
    session = await _session(relay, bot.id)
    assert session["state"] == "waiting_private"
    assert session["start_link"] == f"https://t.me/alerts_bot?start={session['token']}"
    assert session["startgroup_link"] == f"https://t.me/alerts_bot?startgroup={session['token']}"
    qr = await relay.api.get(session["qr_svg_url"])
    assert qr.headers["content-type"] == "image/svg+xml"
    assert qr.text.startswith("<svg")

    emulator.emulator.send_message(bot.id, ANN, None, f"/start {session['token']}")
    verified = await _until_state(relay, session["id"], "waiting_group")
    assert verified["user"] == {"id": ANN["id"], "first_name": "Ann", "username": "ann"}
    assert verified["token"] is None
    [reply] = await _until_texts(emulator, ANN["id"], 1)
    assert reply == handlers.VERIFIED_REPLY.format(name="Ann")
    [sent] = emulator.emulator.sent_messages(ANN["id"])
    assert sent["reply_markup"]["inline_keyboard"][0][0]["url"] == (
        "https://t.me/alerts_bot?startgroup=connect"
    )

    chat = emulator.emulator.create_chat("supergroup", "Ops alerts")
    emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
    done = await _until_state(relay, session["id"], "connected")
    connection = done["connection"]
    assert (connection["chat_id"], connection["title"], connection["status"]) == (
        chat["id"],
        "Ops alerts",
        "active",
    )
    assert connection["connected_by_user_id"] == ANN["id"]
    assert await _until_texts(emulator, chat["id"], 1) == [handlers.CONNECTED_REPLY]
    listed = (await relay.api.get("/v1/connections")).json()
    assert [c["id"] for c in listed] == [connection["id"]]
    assert "group.connected" in await _audit_actions(relay)
    [announced] = await until_sent(relay, watcher, "group.connected")
    assert announced["data"] == {
        "connection_id": connection["id"],
        "bot_id": bot.id,
        "chat_id": chat["id"],
        "chat_type": "supergroup",
        "title": "Ops alerts",
        "is_forum": False,
        "topic": None,
        "message_thread_id": None,
        "connected_by_user_id": ANN["id"],
        "session_id": session["id"],
    }


async def test_other_workspace_sees_nothing(relay: Tgrelay, emulator: RunningEmulator) -> None:
    """Another workspace's key gets 404 for sessions, connections and notifications."""
    bot = await _bot(relay, emulator)
    _, connection = await _connected_group(relay, emulator, bot)
    session_id = connection["session_id"]
    sent = await _notify(relay, connection["id"], "hello")
    rt = relay.runtime
    _, other_key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    async with httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {other_key}"}
    ) as other:
        statuses = [
            (await other.get(f"/v1/connect-sessions/{session_id}")).status_code,
            (await other.post(f"/v1/connect-sessions/{session_id}/reset-group")).status_code,
            (await other.get(f"/v1/connections/{connection['id']}")).status_code,
            (await other.delete(f"/v1/connections/{connection['id']}")).status_code,
            (await other.get(f"/v1/notifications/{sent.json()['id']}")).status_code,
            (await _post_as(other, connection["id"])).status_code,
            (await other.post("/v1/connect-sessions", json={"bot_id": bot.id})).status_code,
        ]
        assert (await other.get("/v1/connections")).json() == []
    assert statuses == [404] * 7


async def _post_as(client: httpx.AsyncClient, connection_id: str) -> httpx.Response:
    return await client.post(
        "/v1/notifications", json={"connection_id": connection_id, "text": "x"}
    )


async def test_alerts_survive_migration_to_a_supergroup(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Alerts before and after the group becomes a supergroup both arrive, the second in the
    supergroup, and the connection shows the new chat id."""
    bot = await _bot(relay, emulator)
    chat, connection = await _connected_group(relay, emulator, bot, chat_type="group")
    first = await _notify(relay, connection["id"], "before migration")
    assert (await _until_notification(relay, first.json()["id"]))["status"] == "sent"

    new_id = emulator.emulator.migrate_chat(chat["id"], by=ANN)
    second = await _notify(relay, connection["id"], "after migration")
    settled = await _until_notification(relay, second.json()["id"])

    assert settled["status"] == "sent"
    assert "before migration" in await _texts(emulator, chat["id"])
    assert await _texts(emulator, new_id) == ["after migration"]
    moved = (await relay.api.get(f"/v1/connections/{connection['id']}")).json()
    assert (moved["chat_id"], moved["chat_type"], moved["status"]) == (
        new_id,
        "supergroup",
        "active",
    )
    assert "group.migrated" in await _audit_actions(relay)


async def test_kicked_bot_makes_alerts_fail_fast(relay: Tgrelay, emulator: RunningEmulator) -> None:
    """After a kick the connection is bot_removed; an alert racing the kick fails with that
    reason (from the kick's update or from Telegram's 403), and later alerts are refused."""
    bot = await _bot(relay, emulator)
    chat, connection = await _connected_group(relay, emulator, bot)

    async def greeted() -> bool:  # the connect reply is a send of its own: let it land first
        return await _texts(emulator, chat["id"]) == [handlers.CONNECTED_REPLY]

    await eventually(greeted)
    emulator.emulator.remove_bot(chat["id"], bot.id, by=ANN)
    racing = await _notify(relay, connection["id"], "are you still there?")
    if racing.status_code == 202:
        settled = await _until_notification(relay, racing.json()["id"])
        assert (settled["status"], settled["error"].split(":")[0]) == ("failed", "bot_removed")
    else:
        assert racing.status_code == 409

    async def removed() -> bool:
        found = (await relay.api.get(f"/v1/connections/{connection['id']}")).json()
        return bool(found["status"] == "bot_removed")

    await eventually(removed)
    refused = await _notify(relay, connection["id"], "anyone there?")
    assert refused.status_code == 409
    assert "bot_removed" in refused.json()["detail"]
    assert await _texts(emulator, chat["id"]) == [handlers.CONNECTED_REPLY]


async def test_idempotency_key_sends_once_and_long_texts_are_split(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """The same idempotency key returns the first alert; a text over 4096 characters is split
    on line boundaries into several messages; notification.sent lists them."""
    watcher = await watch(relay, "notification.*")
    bot = await _bot(relay, emulator)
    chat, connection = await _connected_group(relay, emulator, bot)
    long_text = "\n".join(f"line {i:05d} " + "x" * 90 for i in range(60))  # about 6,000 chars
    first = await _notify(relay, connection["id"], long_text, idempotency_key="deploy-42")
    again = await _notify(relay, connection["id"], "different", idempotency_key="deploy-42")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    settled = await _until_notification(relay, first.json()["id"])
    assert settled["status"] == "sent"
    assert settled["parts"] == 2
    assert len(settled["message_ids"]) == 2
    texts = (await _texts(emulator, chat["id"]))[1:]  # after the connection's confirmation
    assert "\n".join(texts) == long_text
    assert all(len(text) <= 4096 for text in texts)
    [announced] = await until_sent(relay, watcher, "notification.sent")
    assert announced["data"] == {
        "notification_id": first.json()["id"],
        "connection_id": connection["id"],
        "idempotency_key": "deploy-42",
        "status": "sent",
        "message_ids": settled["message_ids"],
        "error": None,
    }


# Telegram's limits scaled to keep the test short, with spacings (250 ms per chat) long enough
# that the limiter's 4 % slack covers a loaded machine's scheduling jitter.
FLOOD = {"per_chat": (1, 0.25), "per_group": (20, 4.0), "per_bot": (100, 1.0)}


@pytest.mark.relay_settings(
    send_limit_per_chat=FLOOD["per_chat"],
    send_limit_per_group=FLOOD["per_group"],
    send_limit_per_bot=FLOOD["per_bot"],
    worker_concurrency=16,
)
async def test_flood_of_alerts_arrives_in_order_without_429(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """300 alerts to 10 groups, with the emulator enforcing the same limits, all arrive, in
    order per group, and the emulator refused none, though requests take up to 50 ms to reach
    it (five times the slack that the 4 % stretch leaves in a 0.25 s chat window)."""
    bot = await _bot(relay, emulator)
    connections = []
    for index in range(10):
        session = await _session(relay, bot.id)
        emulator.emulator.send_message(bot.id, ANN, None, f"/start {session['token']}")
        await _until_state(relay, session["id"], "waiting_group")
        chat = emulator.emulator.create_chat("supergroup", f"Group {index}")
        emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
        done = await _until_state(relay, session["id"], "connected")
        connections.append(done["connection"])
    await asyncio.gather(*(_until_texts(emulator, c["chat_id"], 1) for c in connections))
    emulator.emulator.set_flood_control(
        limits=flood.Limits(
            per_chat=flood.Limit(count=1, window=0.25),
            per_group=flood.Limit(count=20, window=4.0),
            per_bot=flood.Limit(count=100, window=1.0),
        )
    )
    emulator.emulator.set_latency(0.05)
    ids = []
    for n in range(30):
        for connection in connections:
            response = await _notify(relay, connection["id"], f"alert {n:02d}")
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
    # One id at a time: 300 pollers at once would load the machine more than the flood does.
    async with asyncio.timeout(120):
        settled = [await _until_notification_slow(relay, i) for i in ids]
    assert {s["status"] for s in settled} == {"sent"}
    for connection in connections:
        texts = (await _texts(emulator, connection["chat_id"]))[1:]
        assert texts == [f"alert {n:02d}" for n in range(30)]
    report = emulator.emulator.flood_report()
    assert sum(report["sent_by_chat"].values()) >= 300
    assert report["rejected"] == 0


async def _until_notification_slow(relay: Tgrelay, notification_id: str) -> dict[str, Any]:
    while True:
        found: dict[str, Any] = (await relay.api.get(f"/v1/notifications/{notification_id}")).json()
        if found["status"] != "queued":
            return found
        await asyncio.sleep(0.5)


async def test_reset_group_restarts_phase_two_only_after_phase_one(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """reset-group is refused before /start, and afterwards opens a new phase-2 window that
    keeps the verified user; the QR code is served as PNG too."""
    bot = await _bot(relay, emulator)
    session = await _session(relay, bot.id, topic="Alerts")
    png = await relay.api.get(session["qr_png_url"])
    assert (png.status_code, png.content[:8]) == (200, b"\x89PNG\r\n\x1a\n")
    early = await relay.api.post(f"/v1/connect-sessions/{session['id']}/reset-group")
    assert early.status_code == 409

    emulator.emulator.send_message(bot.id, ANN, None, f"/start {session['token']}")
    verified = await _until_state(relay, session["id"], "waiting_group")
    await asyncio.sleep(0.01)
    reset = await relay.api.post(f"/v1/connect-sessions/{session['id']}/reset-group")
    assert reset.status_code == 200
    body = reset.json()
    assert (body["state"], body["user"], body["topic"]) == (
        "waiting_group",
        verified["user"],
        "Alerts",
    )
    assert body["group_started_at"] > verified["group_started_at"]
    gone = await relay.api.get(session["qr_svg_url"])
    assert gone.status_code == 409


async def test_one_tap_startgroup_link_connects_in_one_step(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Adding the bot through the startgroup link (Telegram then sends `/start@bot <token>` in
    the group from the adder) verifies and connects at once."""
    bot = await _bot(relay, emulator)
    session = await _session(relay, bot.id)
    chat = emulator.emulator.create_chat("supergroup", "One tap")
    emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
    emulator.emulator.send_message(
        bot.id, ANN, {"id": chat["id"]}, f"/start@{bot.username} {session['token']}"
    )
    done = await _until_state(relay, session["id"], "connected")
    assert (done["user"]["id"], done["connection"]["chat_id"]) == (ANN["id"], chat["id"])
    assert await _until_texts(emulator, chat["id"], 1) == [handlers.CONNECTED_REPLY]


async def test_forum_topic_is_created_and_alerts_go_there(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A session with a topic, linked to a forum where the bot is admin, gets its own topic:
    the confirmation and later alerts are posted in that thread."""
    bot = await _bot(relay, emulator)
    session = await _session(relay, bot.id, topic="Alerts")
    emulator.emulator.send_message(bot.id, ANN, None, f"/start {session['token']}")
    await _until_state(relay, session["id"], "waiting_group")
    forum = emulator.emulator.create_chat("supergroup", "Company forum", is_forum=True)
    emulator.emulator.add_bot(forum["id"], bot.id, by=ANN, status="administrator")
    done = await _until_state(relay, session["id"], "connected")
    connection_id = done["connection"]["id"]
    await _until_texts(emulator, forum["id"], 1)
    connection = (await relay.api.get(f"/v1/connections/{connection_id}")).json()
    thread_id = connection["message_thread_id"]
    assert (connection["is_forum"], connection["topic"]) == (True, "Alerts")
    assert isinstance(thread_id, int)

    sent = await _notify(relay, connection_id, "disk almost full")
    assert (await _until_notification(relay, sent.json()["id"]))["status"] == "sent"
    posted = [
        (m["text"], m.get("message_thread_id"))
        for m in emulator.emulator.sent_messages(forum["id"])
    ]
    assert posted == [(handlers.CONNECTED_REPLY, thread_id), ("disk almost full", thread_id)]


async def test_sends_queued_before_the_outbox_still_go(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Jobs of the old send kinds, pending when a hub upgrades, become outbox sends: the alert
    is sent and recorded, the reply arrives with its button."""
    bot = await _bot(relay, emulator)
    chat, connection = await _connected_group(relay, emulator, bot)
    await _until_texts(emulator, chat["id"], 1)
    rt = relay.runtime
    now = rt.clock()
    queued = Notification(
        id="ntf_legacy",
        workspace_id=relay.workspace_id,
        connection_id=connection["id"],
        idempotency_key=None,
        text="from before",
        parse_mode=None,
        parts=("from before",),
        status=NotificationStatus.QUEUED,
        message_ids=(),
        error=None,
        created_at=now,
        updated_at=now,
        sent_at=None,
    )
    reply = {
        "bot_id": bot.id,
        "chat_id": ANN["id"],
        "text": "reply from before",
        "message_thread_id": None,
        "url_buttons": [["Open", "https://example.com/"]],
        "connection_id": None,
    }
    async with rt.db.transaction() as conn:
        await groups_store.add_notification(conn, queued)
        await job_store.enqueue(
            conn,
            [
                NewJob(
                    kind=legacy_sends.LEGACY_NOTIFICATION, payload={"notification_id": queued.id}
                ),
                NewJob(kind=legacy_sends.LEGACY_MESSAGE, payload=reply),
            ],
            now=now,
            default_max_attempts=8,
        )
    rt.notify_queue(DEFAULT_QUEUE)

    settled = await _until_notification(relay, queued.id)

    assert (settled["status"], len(settled["message_ids"])) == ("sent", 1)
    assert (await _texts(emulator, chat["id"]))[1:] == ["from before"]

    async def replied() -> bool:
        return "reply from before" in await _texts(emulator, ANN["id"])

    await eventually(replied)
