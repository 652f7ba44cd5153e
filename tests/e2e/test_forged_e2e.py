"""Forged webhook requests: one answer for every failure, tallied audit rows, and a secret
that rotates itself when they pile up, while genuine deliveries go on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select

from tgrelay.db import tables
from tgrelay.inbox.receiver import SECRET_HEADER
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}
HEADER = SECRET_HEADER.decode()
BODY = orjson.dumps({"update_id": 1, "message": {"message_id": 1}})


def _private_message(update_id: int) -> bytes:
    """A genuine-looking private message update, as Telegram pushes it."""
    chat = {"id": ANN["id"], "type": "private", "first_name": ANN["first_name"]}
    message = {"message_id": update_id, "from": ANN, "chat": chat, "date": 1795263000, "text": "hi"}
    return orjson.dumps({"update_id": update_id, "message": message})


async def _tallies(relay: Tgrelay) -> dict[tuple[int | None, str | None], int]:
    """Counted intake.rejected requests per (bot, workspace), whatever minutes they fell in."""
    log = tables.audit_log
    async with relay.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            select(log.c.bot_id, log.c.workspace_id, func.sum(log.c.count))
            .where(log.c.action == "intake.rejected")
            .group_by(log.c.bot_id, log.c.workspace_id)
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}


async def _audit(relay: Tgrelay, **params: Any) -> list[dict[str, Any]]:
    response = await relay.api.get("/v1/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_unknown_bot_and_wrong_secret_get_one_answer_and_tallied_rows(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """An unknown bot id, a wrong and a missing secret get the same 401 body; their audit rows hold counts, and the bot's workspace reads its own."""
    port = free_port()
    async with running_tgrelay(
        settings_for(emulator, tmp_path, webhook=True, port=port), port
    ) as relay:
        bot = emulator.emulator.create_bot("relay_bot")
        await relay.connect_bot(bot.token)
        async with httpx.AsyncClient(base_url=relay.base_url) as client:
            answers = [
                await client.post(f"/telegram/{bot.id}", content=BODY, headers={HEADER: "nope"}),
                await client.post(f"/telegram/{bot.id}", content=BODY),
                await client.post("/telegram/42", content=BODY, headers={HEADER: "nope"}),
                await client.post("/telegram/42", content=BODY),
            ]
        expected = (401, b'{"error":"unknown bot or wrong secret token"}')
        assert [(a.status_code, a.content) for a in answers] == [expected] * 4
        assert len({tuple(sorted(a.headers.items())) for a in answers}) == 1

        async def tallied() -> bool:
            return await _tallies(relay) == {(bot.id, relay.workspace_id): 2, (42, None): 2}

        await eventually(tallied)
        visible = await _audit(relay, action="intake.rejected")
        assert sum(e["count"] for e in visible) == 2
        assert {(e["bot_id"], e["remote_addr"], e["detail"]["status"]) for e in visible} == {
            (bot.id, "127.0.0.1", 401)
        }
        async with relay.runtime.db.engine.connect() as conn:
            stored = await conn.scalar(select(func.count()).select_from(tables.updates))
        assert stored == 0


async def test_a_forged_flood_rotates_the_secret_and_genuine_pushes_go_on(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Past the threshold in a minute the bot's webhook gets a new secret at Telegram, with an audit row and a bot.secret_rotated event; the old secret still passes during its grace."""
    port = free_port()
    settings = settings_for(emulator, tmp_path, webhook=True, port=port, forged_rotate_threshold=5)
    async with running_tgrelay(settings, port) as relay:
        bot = emulator.emulator.create_bot("relay_bot")
        await relay.connect_bot(bot.token)
        old_hook = emulator.emulator.webhook_of(bot.id)
        assert old_hook is not None
        assert old_hook.secret_token
        old_secret = old_hook.secret_token
        async with httpx.AsyncClient(base_url=relay.base_url) as client:
            for _ in range(6):
                forged = await client.post(
                    f"/telegram/{bot.id}", content=BODY, headers={HEADER: "guess"}
                )
                assert forged.status_code == 401

            async def rotated() -> bool:
                hook = emulator.emulator.webhook_of(bot.id)
                return hook is not None and hook.secret_token not in (None, old_secret)

            await eventually(rotated)
            new_hook = emulator.emulator.webhook_of(bot.id)
            assert new_hook is not None
            assert new_hook.secret_token is not None
            old, new = _private_message(900), _private_message(901)
            in_grace = await client.post(
                f"/telegram/{bot.id}", content=old, headers={HEADER: old_secret}
            )
            current = await client.post(
                f"/telegram/{bot.id}", content=new, headers={HEADER: new_hook.secret_token}
            )
        assert (in_grace.status_code, current.status_code) == (200, 200)

        [entry] = await _audit(relay, action="bot.secret_rotated")
        assert (entry["actor"], entry["bot_id"], entry["count"]) == ("system", bot.id, 1)
        detail = entry["detail"]
        assert {k: v for k, v in detail.items() if k != "previous_secret_valid_until"} == {
            "reason": "forged requests",
            "forged_requests": 6,
            "threshold": 5,
            "secret_generation": 2,
        }
        async with relay.runtime.db.engine.connect() as conn:
            bodies = list(
                await conn.scalars(
                    select(tables.events.c.body).where(tables.events.c.type == "bot.secret_rotated")
                )
            )
        [event] = [orjson.loads(body) for body in bodies]
        assert event["workspace_id"] == relay.workspace_id
        assert event["data"] == {
            "bot_id": bot.id,
            "username": "relay_bot",
            "secret_generation": 2,
            "previous_secret_valid_until": event["data"]["previous_secret_valid_until"],
            "reason": "forged requests",
            "forged_requests": 6,
            "threshold": 5,
        }
        assert datetime.fromisoformat(event["data"]["previous_secret_valid_until"]) == (
            datetime.fromisoformat(detail["previous_secret_valid_until"])
        )

        # Telegram now pushes with the new secret: a user's message is stored and processed.
        update = emulator.emulator.send_message(bot.id, ANN, None, "still here")

        async def processed() -> bool:
            found = await relay.updates(bot.id)
            return sorted((u["update_id"], u["status"]) for u in found) == sorted(
                [(update["update_id"], "processed"), (900, "processed"), (901, "processed")]
            )

        await eventually(processed)
