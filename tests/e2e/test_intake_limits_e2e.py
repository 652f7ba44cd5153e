"""Numbers beyond 64 bits: refused at the webhook intake, skipped by the poller, never retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from tgrelay.db import tables
from tgrelay.inbox import receiver
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN_ID = 5001
ANN = {"id": ANN_ID, "is_bot": False, "first_name": "Ann"}
HUGE = 2**70


def _message(chat_id: int, text: str, **extra: Any) -> dict[str, Any]:
    chat = {"id": chat_id, "type": "private", "first_name": "Ann"}
    return {"message_id": 1, "date": 1700000000, "chat": chat, "from": ANN, "text": text} | extra


@pytest.fixture(params=["webhook", "polling"])
async def relay(
    request: pytest.FixtureRequest, emulator: RunningEmulator, tmp_path: Path
) -> AsyncIterator[Tgrelay]:
    port = free_port()
    settings = settings_for(emulator, tmp_path, webhook=request.param == "webhook", port=port)
    async with running_tgrelay(settings, port) as relay:
        yield relay


async def _audit(relay: Tgrelay) -> list[tuple[str, int | None, dict[str, Any]]]:
    async with relay.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            select(tables.audit_log.c.action, tables.audit_log.c.bot_id, tables.audit_log.c.detail)
            .where(tables.audit_log.c.action.in_(["intake.rejected", "intake.skipped"]))
            .order_by(tables.audit_log.c.id)
        )
        return [(row.action, row.bot_id, orjson.loads(row.detail)) for row in rows]


async def test_an_update_with_a_huge_chat_id_is_refused_and_its_neighbours_stored(
    relay: Tgrelay, emulator: RunningEmulator, request: pytest.FixtureRequest
) -> None:
    """An update whose chat id is 2**70 is not stored (webhook: 400 and an intake.rejected row;
    polling: skipped with an intake.skipped row), and the updates around it are processed."""
    bot = emulator.emulator.create_bot("limits_bot")
    await relay.connect_bot(bot.token)
    before = emulator.emulator.inject_update(bot.id, {"message": _message(ANN_ID, "before")})
    huge = emulator.emulator.inject_update(bot.id, {"message": _message(HUGE, "huge")})
    after = emulator.emulator.inject_update(bot.id, {"message": _message(ANN_ID, "after")})

    async def settled() -> bool:
        stored = [(u["update_id"], u["status"]) for u in await relay.updates(bot.id)]
        return len(await _audit(relay)) >= 1 and stored == [
            (before["update_id"], "processed"),
            (after["update_id"], "processed"),
        ]

    await eventually(settled)
    if request.node.callspec.params["relay"] == "webhook":
        expected = ("intake.rejected", bot.id, {"status": 400, "reason": receiver.HUGE_NUMBER})
    else:
        detail = {
            "reason": receiver.HUGE_NUMBER,
            "update_id": huge["update_id"],
            "at": "message.chat.id",
        }
        expected = ("intake.skipped", bot.id, detail)
    assert (await _audit(relay))[0] == expected


@pytest.mark.parametrize("relay", ["webhook"], indirect=True)
async def test_webhook_refuses_every_number_beyond_64_bits(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Pushes holding a number beyond the 64-bit integers anywhere get 400 and are not stored;
    a text of 25 digits and the 64-bit extremes pass."""
    bot = emulator.emulator.create_bot("limits_bot")
    await relay.connect_bot(bot.token)
    webhook = emulator.emulator.webhook_of(bot.id)
    assert webhook is not None
    assert webhook.secret_token is not None
    headers = {"X-Telegram-Bot-Api-Secret-Token": webhook.secret_token}
    refused_bodies = [
        {"update_id": 1, "message": _message(HUGE, "chat id")},
        {"update_id": 2, "message": _message(1, "u64", from_={"id": 2**63})},
        {"update_id": 3, "message": _message(1, "past u64", reply_to_message_id=2**64)},
        {"update_id": 4, "message": _message(-(2**63) - 1, "below i64")},
        {"update_id": 5, "message": _message(1, "exponent", message_id=1e30)},
        {"update_id": 6, "callback_query": {"id": "q", "from": ANN, "data": "x", "n": [0, -HUGE]}},
    ]
    passed_bodies = [
        {"update_id": 7, "message": _message(1, "1234567890123456789012345")},
        {"update_id": 8, "message": _message(-(2**63) + 1, "int64 min", message_id=2**63 - 1)},
    ]
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        answers = [
            await client.post(
                f"/telegram/{bot.id}",
                content=json.dumps(body).replace('"from_"', '"from"').encode(),
                headers=headers,
            )
            for body in refused_bodies + passed_bodies
        ]

    assert [(a.status_code, a.content) for a in answers] == [
        (400, orjson.dumps({"error": receiver.HUGE_NUMBER}))
    ] * 6 + [(200, b"")] * 2
    assert [u["update_id"] for u in await relay.updates(bot.id)] == [7, 8]
