"""End to end: a bot's group connections, updates and sessions stay with the workspace that
held the bot, through disconnects, reconnects and takeovers (issue 17, bot ownership)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update

from tgrelay.app import UPDATES_BATCH_SIZE, updates_registry
from tgrelay.db import tables
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.inbox.writer import UPDATES_QUEUE
from tgrelay.queue import pacing
from tgrelay.queue.models import JobState
from tgrelay.queue.worker import Worker
from tgrelay.testing.emulator.state import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for
from .watched import until_sent, watch

ANN: dict[str, Any] = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
TEAM_CHAT: dict[str, Any] = {"id": -100777, "type": "supergroup", "title": "Team"}
TAKEN_OVER_DETAIL = (
    'this bot is connected to another workspace; send "take_over": true to move it here'
)


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    # One alert per group every 4 s: an alert queued right behind another waits, queued,
    # long enough for the bot to be disconnected under it.
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        send_limit_per_group=(1, 4.0),
        webhooks_allow_private=True,  # tests.e2e.watched's endpoint is on loopback
    )
    async with running_tgrelay(settings, port) as relay:
        yield relay


@asynccontextmanager
async def other_workspace(relay: Tgrelay) -> AsyncIterator[httpx.AsyncClient]:
    """An API client of a second workspace on the same tgrelay."""
    rt = relay.runtime
    _workspace, key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    async with httpx.AsyncClient(
        base_url=relay.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        yield client


async def _json(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def _connected_group(
    api: httpx.AsyncClient, emulator: RunningEmulator, bot: BotRecord
) -> dict[str, Any]:
    """Link a group through a connect session (both phases, by Ann); the connection."""
    session = await _json(await api.post("/v1/connect-sessions", json={"bot_id": bot.id}), 201)
    emulator.emulator.send_message(bot.id, ANN, None, f"/start {session['token']}")

    async def state_is(state: str) -> bool:
        found = await _json(await api.get(f"/v1/connect-sessions/{session['id']}"), 200)
        return bool(found["state"] == state)

    await eventually(lambda: state_is("waiting_group"))
    chat = emulator.emulator.create_chat("supergroup", "Ops alerts")
    emulator.emulator.add_bot(chat["id"], bot.id, by=ANN)
    await eventually(lambda: state_is("connected"))
    done = await _json(await api.get(f"/v1/connect-sessions/{session['id']}"), 200)
    connection: dict[str, Any] = done["connection"]
    return connection


async def _status_of(api: httpx.AsyncClient, connection_id: str) -> tuple[str, str | None]:
    found = await _json(await api.get(f"/v1/connections/{connection_id}"), 200)
    return found["status"], found["status_reason"]


async def _settled(api: httpx.AsyncClient, notification_id: str) -> dict[str, Any]:
    async def done() -> bool:
        found = await _json(await api.get(f"/v1/notifications/{notification_id}"), 200)
        return bool(found["status"] != "queued")

    await eventually(done)
    found: dict[str, Any] = await _json(await api.get(f"/v1/notifications/{notification_id}"), 200)
    return found


async def _notify(api: httpx.AsyncClient, connection_id: str, text: str) -> httpx.Response:
    return await api.post("/v1/notifications", json={"connection_id": connection_id, "text": text})


async def _settled_updates(relay: Tgrelay, bot_id: int, dead: int) -> list[dict[str, Any]]:
    """The bot's updates once update `dead` is dead and every other one processed."""

    async def settled() -> bool:
        found = {u["update_id"]: u["status"] for u in await relay.updates(bot_id)}
        return found.get(dead) == "dead" and all(
            status == "processed" for update_id, status in found.items() if update_id != dead
        )

    await eventually(settled)
    return await relay.updates(bot_id)


async def _rows(relay: Tgrelay, table: Any, **where: Any) -> list[Any]:
    async with relay.runtime.db.engine.connect() as conn:
        query = select(table).order_by(table.c.created_at)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return list(await conn.execute(query))


async def test_disconnect_suspends_connections_and_reconnect_resumes_them(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Disconnecting suspends the bot's connections (alerts refused with 409), and connecting
    it again in the same workspace makes them active, so alerts go out again."""
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    connection = await _connected_group(relay.api, emulator, bot)

    await _json(await relay.api.delete(f"/v1/bots/{bot.id}"), 200)
    suspended = await _status_of(relay.api, connection["id"])
    refused = await _notify(relay.api, connection["id"], "disk full")
    await relay.connect_bot(bot.token)
    resumed = await _status_of(relay.api, connection["id"])
    sent = await _settled(
        relay.api, (await _json(await _notify(relay.api, connection["id"], "disk ok"), 202))["id"]
    )

    assert suspended == ("suspended", "bot disconnected")
    assert (refused.status_code, refused.json()["detail"]) == (
        409,
        f"connection {connection['id']} is suspended: bot disconnected",
    )
    assert resumed == ("active", None)
    assert (sent["status"], sent["error"]) == ("sent", None)
    changes = [
        (orjson.loads(row.detail)["status"], orjson.loads(row.detail)["reason"])
        for row in await _rows(relay, tables.audit_log, action="group.status_changed")
    ]
    assert changes == [("suspended", "bot disconnected"), ("active", "bot connected")]
    events = [
        (body["data"]["status"], body["data"]["reason"])
        for body in (
            orjson.loads(row.body)
            for row in await _rows(relay, tables.events, type="group.status_changed")
        )
    ]
    assert events == [("suspended", "bot disconnected"), ("active", "bot connected")]


async def test_a_queued_alert_fails_when_the_bot_is_disconnected(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """An alert still queued when its bot is disconnected fails with the suspension's reason,
    sends notification.failed saying so, and never reaches the group."""
    watcher = await watch(relay, "notification.*")
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    connection = await _connected_group(relay.api, emulator, bot)
    # The confirmation took the group's slot: this alert waits its 4 s, queued.
    queued = await _json(await _notify(relay.api, connection["id"], "disk full"), 202)

    await _json(await relay.api.delete(f"/v1/bots/{bot.id}"), 200)
    failed = await _settled(relay.api, queued["id"])

    assert (failed["status"], failed["error"], failed["message_ids"]) == (
        "failed",
        "suspended: bot disconnected",
        [],
    )
    texts = [m["text"] for m in emulator.emulator.sent_messages(connection["chat_id"])]
    assert "disk full" not in texts
    [announced] = await until_sent(relay, watcher, "notification.failed")
    assert announced["data"] == {
        "notification_id": queued["id"],
        "connection_id": connection["id"],
        "idempotency_key": None,
        "status": "failed",
        "message_ids": [],
        "error": "suspended: bot disconnected",
    }


async def test_connecting_a_bot_held_elsewhere_needs_take_over(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Without take_over the other workspace's connect is refused with 409 and changes
    nothing: the holder's bot, connection and alerts stay as they were."""
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    connection = await _connected_group(relay.api, emulator, bot)

    async with other_workspace(relay) as other:
        refused = await other.post("/v1/bots", json={"token": bot.token, "take_over": False})
        other_bots = await _json(await other.get("/v1/bots"), 200)

    assert (refused.status_code, refused.json()["detail"]) == (409, TAKEN_OVER_DETAIL)
    assert other_bots == []
    held = await _json(await relay.api.get(f"/v1/bots/{bot.id}"), 200)
    assert held["status"] == "healthy"
    assert await _status_of(relay.api, connection["id"]) == ("active", None)


async def test_take_over_moves_the_bot_and_leaves_the_holder_disconnected(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """take_over disconnects the bot in the workspace that held it (reason "taken over", an
    audit row and a bot.status_changed event there) and suspends its connections there."""
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    connection = await _connected_group(relay.api, emulator, bot)

    async with other_workspace(relay) as other:
        taken = await _json(
            await other.post("/v1/bots", json={"token": bot.token, "take_over": True}), 201
        )
        refused = await _notify(relay.api, connection["id"], "disk full")
        holder_bots = await _json(await relay.api.get("/v1/bots"), 200)
        other_id = (await _rows(relay, tables.bots, id=bot.id))[0].workspace_id

    assert (taken["id"], taken["status"]) == (bot.id, "healthy")
    assert holder_bots == []  # the bot's row is the new holder's now
    assert await _status_of(relay.api, connection["id"]) == ("suspended", "bot disconnected")
    assert (refused.status_code, refused.json()["detail"]) == (
        409,
        f"connection {connection['id']} is suspended: bot disconnected",
    )
    audits = [
        (row.action, row.actor, orjson.loads(row.detail))
        for row in await _rows(
            relay, tables.audit_log, workspace_id=relay.workspace_id, action="bot.status_changed"
        )
    ]
    assert audits[-1] == (
        "bot.status_changed",
        "system",
        {
            "old": "healthy",
            "new": "disconnected",
            "old_conflict_kind": None,
            "conflict_kind": None,
            "reason": "taken over",
        },
    )
    [event] = [
        orjson.loads(row.body)
        for row in await _rows(
            relay, tables.events, workspace_id=relay.workspace_id, type="bot.status_changed"
        )
    ]
    assert event["data"] == {
        "bot_id": bot.id,
        "username": "alerts_bot",
        "status": "disconnected",
        "previous_status": "healthy",
        "conflict_kind": None,
        "reason": "taken over",
    }
    new_holder_events = await _rows(
        relay, tables.events, workspace_id=other_id, type="bot.status_changed"
    )
    assert new_holder_events == []


async def test_the_new_holder_sees_only_what_came_after_its_connect(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A workspace that takes a bot over sees none of the previous holder's updates (listing
    or retrying its dead ones), connections or sessions: only updates received since."""
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    connection = await _connected_group(relay.api, emulator, bot)
    open_session = await _json(
        await relay.api.post("/v1/connect-sessions", json={"bot_id": bot.id}), 201
    )
    # Not an Update aiogram can parse: its processing fails for good, so it is dead.
    emulator.emulator.inject_update(bot.id, {"update_id": 900, "message": {"message_id": 1}})
    before = await _settled_updates(relay, bot.id, dead=900)
    assert len(before) > 1  # the connect flow's updates and the dead one

    async with other_workspace(relay) as other:
        await _json(await other.post("/v1/bots", json={"token": bot.token, "take_over": True}), 201)
        seen_at_once = await _json(await other.get(f"/v1/bots/{bot.id}/updates"), 200)
        dead_seen = await _json(await other.get(f"/v1/bots/{bot.id}/updates?status=dead"), 200)
        retried = await other.post(f"/v1/bots/{bot.id}/updates/900/retry")
        connections = await _json(await other.get("/v1/connections"), 200)
        their_connection = await other.get(f"/v1/connections/{connection['id']}")
        their_session = await other.get(f"/v1/connect-sessions/{open_session['id']}")
        after = emulator.emulator.send_message(bot.id, ANN, None, "hello new team")

        async def arrived() -> bool:
            found = await _json(await other.get(f"/v1/bots/{bot.id}/updates"), 200)
            return [u["status"] for u in found["updates"]] == ["processed"]

        await eventually(arrived)
        seen = await _json(await other.get(f"/v1/bots/{bot.id}/updates"), 200)

    assert seen_at_once == {"updates": [], "next_after": None}
    assert dead_seen == {"updates": [], "next_after": None}
    assert (retried.status_code, retried.json()["detail"]) == (
        404,
        f"no update 900 for bot {bot.id}",
    )
    assert connections == []
    assert their_connection.status_code == 404
    assert their_session.status_code == 404
    assert [u["update_id"] for u in seen["updates"]] == [after["update_id"]]
    # The previous holder's open session was cancelled: its token links nothing any more.
    [session] = await _rows(relay, tables.connect_sessions, id=open_session["id"])
    assert (session.state, session.token) == ("cancelled", None)


@asynccontextmanager
async def updates_worker(relay: Tgrelay) -> AsyncIterator[None]:
    """The updates queue's worker, as `serve` runs it, for a relay started without workers."""
    runner = Worker(
        relay.runtime.db,
        updates_registry(relay.runtime),
        clock=relay.runtime.clock,
        queue=UPDATES_QUEUE,
        concurrency=1,
        batch_size=UPDATES_BATCH_SIZE,
        pacing=pacing.Pacing.steady(0.02),
    )
    task = asyncio.create_task(runner.run())
    try:
        yield
    finally:
        await runner.stop()
        await task


async def _process_update_job(relay: Tgrelay, bot_id: int, update_id: int) -> Any:
    """The process_update job of a stored update, or None while it is not stored."""
    async with relay.runtime.db.engine.connect() as conn:
        query = (
            select(tables.jobs)
            .join(tables.updates, tables.jobs.c.subject_id == tables.updates.c.id)
            .where(
                tables.jobs.c.kind == PROCESS_UPDATE,
                tables.updates.c.bot_id == bot_id,
                tables.updates.c.update_id == update_id,
            )
        )
        return (await conn.execute(query)).first()


async def test_updates_queued_at_a_takeover_are_not_given_to_the_new_holder(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """An update of the previous holder still waiting for the worker when the bot is taken
    over is not handled for the new holder: its job finishes without a message.received
    event or delivery there; an update received after the takeover gets both."""
    port = free_port()
    settings = settings_for(
        emulator, tmp_path, webhook=True, port=port, webhooks_allow_private=True
    )
    async with running_tgrelay(settings, port, run_worker=False) as relay:
        bot = emulator.emulator.create_bot("alerts_bot")
        await relay.connect_bot(bot.token)
        before = emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, "for the old team")

        async def stored() -> bool:
            return await _process_update_job(relay, bot.id, before["update_id"]) is not None

        await eventually(stored)
        waiting = await _process_update_job(relay, bot.id, before["update_id"])

        async with other_workspace(relay) as other:
            endpoint = await _json(
                await other.post(
                    "/v1/endpoints",
                    json={"url": "http://127.0.0.1:9/hook", "event_types": ["message.received"]},
                ),
                201,
            )
            await _json(
                await other.post("/v1/bots", json={"token": bot.token, "take_over": True}), 201
            )
            other_id = (await _rows(relay, tables.bots, id=bot.id))[0].workspace_id
            after = emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, "for the new team")

            async with updates_worker(relay):

                async def both_done() -> bool:
                    jobs = [
                        await _process_update_job(relay, bot.id, update["update_id"])
                        for update in (before, after)
                    ]
                    return all(job is not None and job.state == JobState.DONE for job in jobs)

                await eventually(both_done)
            deliveries = await _json(
                await other.get(f"/v1/endpoints/{endpoint['id']}/deliveries"), 200
            )

    assert waiting.state == JobState.PENDING  # still queued when the bot changed hands
    received = [
        orjson.loads(row.body)
        for row in await _rows(relay, tables.events, workspace_id=other_id, type="message.received")
    ]
    assert [event["data"]["text"] for event in received] == ["for the new team"]
    assert [(d["event_id"], d["event_type"]) for d in deliveries["deliveries"]] == [
        (received[0]["id"], "message.received")
    ]
    # The previous holder, which no longer has the bot, gets nothing for it either.
    assert (
        await _rows(relay, tables.events, workspace_id=relay.workspace_id, type="message.received")
        == []
    )


@pytest.mark.parametrize("lost_by", ["disconnect", "takeover"])
async def test_an_alert_is_not_sent_through_a_bot_its_workspace_no_longer_holds(
    relay: Tgrelay, emulator: RunningEmulator, lost_by: str
) -> None:
    """The send job checks that the connection's workspace still holds the bot: a connection
    still active (as a job that read before the disconnect committed sees it) fails its alert
    with "suspended: bot disconnected", and nothing reaches the group."""
    bot = emulator.emulator.create_bot("alerts_bot")
    await relay.connect_bot(bot.token)
    connection = await _connected_group(relay.api, emulator, bot)
    rt = relay.runtime
    if lost_by == "disconnect":
        change: dict[str, Any] = {"status": "disconnected"}
    else:
        elsewhere, _key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
        change = {"workspace_id": elsewhere.id}
    # The bot's side of a disconnect or takeover without its connections' suspension.
    async with rt.db.transaction() as conn:
        await conn.execute(update(tables.bots).where(tables.bots.c.id == bot.id).values(**change))
    assert await _status_of(relay.api, connection["id"]) == ("active", None)

    queued = await _json(await _notify(relay.api, connection["id"], "disk full"), 202)
    failed = await _settled(relay.api, queued["id"])

    assert (failed["status"], failed["error"], failed["message_ids"]) == (
        "failed",
        "suspended: bot disconnected",
        [],
    )
    texts = [m["text"] for m in emulator.emulator.sent_messages(connection["chat_id"])]
    assert "disk full" not in texts
