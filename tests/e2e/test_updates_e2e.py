"""End to end, both delivery modes: a user's message reaches tgrelay, once, and is processed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from tgrelay.db import tables
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
TEAM_CHAT = {"id": -100777, "type": "supergroup", "title": "Team"}


@pytest.fixture(params=["webhook", "polling"])
async def relay(
    request: pytest.FixtureRequest, emulator: RunningEmulator, tmp_path: Path
) -> AsyncIterator[Tgrelay]:
    port = free_port()
    settings = settings_for(emulator, tmp_path, webhook=request.param == "webhook", port=port)
    async with running_tgrelay(settings, port) as relay:
        yield relay


async def _rows(relay: Tgrelay, table: Any, **where: Any) -> int:
    async with relay.runtime.db.engine.connect() as conn:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int(await conn.scalar(query) or 0)


async def test_message_is_stored_once_and_processed_once(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A user's group message arrives, is stored once, processed once, and its chat and sender are recorded."""
    bot = emulator.emulator.create_bot("relay_bot")
    connected = await relay.connect_bot(bot.token)
    mode = "webhook" if relay.runtime.settings.uses_webhooks else "polling"
    assert connected["mode"] == mode

    update = emulator.emulator.send_message(bot.id, ANN, TEAM_CHAT, "hello team")

    async def processed() -> bool:
        found = await relay.updates(bot.id)
        return bool(found) and found[0]["status"] == "processed"

    await eventually(processed)
    stored = await relay.updates(bot.id)
    assert [
        (u["update_id"], u["kind"], u["chat_id"], u["source"], u["status"]) for u in stored
    ] == [(update["update_id"], "message", TEAM_CHAT["id"], mode, "processed")]
    assert await _rows(relay, tables.jobs, state="done") == 1
    assert await _rows(relay, tables.telegram_users, user_id=ANN["id"]) == 1
    assert await _rows(relay, tables.telegram_chats, chat_id=TEAM_CHAT["id"]) == 1


async def test_duplicate_update_is_absorbed(relay: Tgrelay, emulator: RunningEmulator) -> None:
    """The same update delivered again (same update_id) is acknowledged and creates nothing."""
    bot = emulator.emulator.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    update = emulator.emulator.send_message(bot.id, ANN, None, "first")

    async def stored_once() -> bool:
        found = await relay.updates(bot.id)
        return [u["status"] for u in found] == ["processed"]

    await eventually(stored_once)
    emulator.emulator.inject_update(bot.id, update)  # Telegram re-sends the very same update
    follow_up = emulator.emulator.send_message(bot.id, ANN, None, "second")

    async def follow_up_processed() -> bool:
        found = await relay.updates(bot.id)
        return [u["status"] for u in found] == ["processed", "processed"]

    await eventually(follow_up_processed)
    stored = await relay.updates(bot.id)
    assert [u["update_id"] for u in stored] == [update["update_id"], follow_up["update_id"]]
    assert await _rows(relay, tables.jobs) == 2
    assert await _rows(relay, tables.updates) == 2


@pytest.mark.parametrize("webhook", [True])
async def test_wrong_secret_is_401_and_audited(
    emulator: RunningEmulator, tmp_path: Path, webhook: bool
) -> None:
    """A push with a wrong or missing secret gets 401, is counted in the audit trail, and nothing is stored."""
    port = free_port()
    settings = settings_for(emulator, tmp_path, webhook=webhook, port=port)
    async with running_tgrelay(settings, port) as relay:
        bot = emulator.emulator.create_bot("relay_bot")
        await relay.connect_bot(bot.token)
        body = orjson.dumps({"update_id": 1, "message": {"message_id": 1}})
        async with httpx.AsyncClient(base_url=relay.base_url) as client:
            wrong = await client.post(
                f"/telegram/{bot.id}",
                content=body,
                headers={"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"},
            )
            missing = await client.post(f"/telegram/{bot.id}", content=body)
            unknown = await client.post("/telegram/42", content=body)
        assert [wrong.status_code, missing.status_code, unknown.status_code] == [401, 401, 401]

        async def audited() -> bool:
            log = tables.audit_log
            async with relay.runtime.db.engine.connect() as conn:
                counted = await conn.scalar(
                    select(func.sum(log.c.count)).where(log.c.action == "intake.rejected")
                )
            return bool(counted == 3)

        await eventually(audited)
        assert await _rows(relay, tables.updates) == 0


@pytest.mark.parametrize("webhook", [True, False], ids=["webhook", "polling"])
async def test_health_job_detects_foreign_webhook_then_revocation(
    emulator: RunningEmulator, tmp_path: Path, webhook: bool
) -> None:
    """The periodic health job marks a foreign webhook as webhook_conflict, then a revoked token as token_revoked."""
    port = free_port()
    settings = settings_for(
        emulator, tmp_path, webhook=webhook, port=port, health_interval_seconds=0.2
    )
    async with running_tgrelay(settings, port) as relay:
        bot = emulator.emulator.create_bot("relay_bot")
        await relay.connect_bot(bot.token)

        async def status_is(status: str, conflict_kind: str | None) -> bool:
            view = (await relay.api.get(f"/v1/bots/{bot.id}")).json()
            return (view["status"], view["conflict_kind"]) == (status, conflict_kind)

        emulator.emulator.set_webhook_as_foreign(bot.id, "https://other.example/hook")
        await eventually(lambda: status_is("webhook_conflict", "foreign"))
        emulator.emulator.revoke(bot.id)
        await eventually(lambda: status_is("token_revoked", None))

        async with relay.runtime.db.engine.connect() as conn:
            details = await conn.scalars(
                select(tables.audit_log.c.detail)
                .where(tables.audit_log.c.action == "bot.status_changed")
                .order_by(tables.audit_log.c.id)
            )
            changes = [(d["old"], d["new"]) for d in map(orjson.loads, details)]
        assert changes[-2:] == [
            ("healthy", "webhook_conflict"),
            ("webhook_conflict", "token_revoked"),
        ]
