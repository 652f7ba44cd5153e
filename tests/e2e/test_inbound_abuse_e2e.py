"""Inbound abuse limits end to end: a chat over TGRELAY_INBOUND_CHAT_LIMIT, the same message
under a new update_id, and webhook requests from outside TGRELAY_TELEGRAM_SOURCE_NETWORKS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from tests.databases import PostgresServer
from tgrelay.db import tables
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator

from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann"}
NOISY = {"id": -100701, "type": "supergroup", "title": "Noisy"}
QUIET = {"id": -100702, "type": "supergroup", "title": "Quiet"}
TELEGRAM_NETWORKS = "149.154.160.0/20,91.108.4.0/22"


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, postgres: PostgresServer
) -> AsyncIterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    async with postgres.fresh_database() as url:
        yield url


async def _events(relay: Tgrelay, *types: str) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of the workspace's events of these types, by update_id (the events of
    one batch share their created_at, and event ids are random)."""
    async with relay.runtime.db.engine.connect() as conn:
        rows = await conn.execute(
            select(tables.events.c.type, tables.events.c.body).where(
                tables.events.c.type.in_(types)
            )
        )
        found = [(row.type, orjson.loads(row.body)["data"]) for row in rows]
    return sorted(found, key=lambda event: (event[1]["update_id"], event[0]))


async def _settled(relay: Tgrelay, bot_id: int, count: int) -> list[tuple[int, str]]:
    """(update_id, status) of the bot's updates once `count` are stored and none is pending."""
    found: list[tuple[int, str]] = []

    async def done() -> bool:
        nonlocal found
        found = [(u["update_id"], u["status"]) for u in await relay.updates(bot_id)]
        return len(found) == count and all(status != "pending" for _, status in found)

    await eventually(done)
    return found


def _kept_back(relay: Tgrelay, bot_id: int, disposition: str) -> float | None:
    return relay.runtime.metrics.registry.get_sample_value(
        "tgrelay_updates_kept_back_total", {"bot_id": str(bot_id), "disposition": disposition}
    )


async def test_a_chat_over_its_limit_is_stored_acknowledged_throttled_and_announced_once_per_window(
    emulator: RunningEmulator, tmp_path: Path, database_url: str | None
) -> None:
    """With a limit of 2 updates per 60 s, a chat's 3rd to 5th updates are stored and
    acknowledged (never lost), marked throttled, not handled (no message.received), counted,
    and announced by one chat.throttled; another chat is unaffected; once the window has
    passed the chat gets 2 more handled and a second chat.throttled for its new window."""
    port = free_port()
    clock = Clock()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        inbound_chat_limit=(2, 60),
        database_url=database_url,
    )
    async with running_tgrelay(settings, port, clock=clock) as relay:
        bot = emulator.emulator.create_bot("busy_bot")
        await relay.connect_bot(bot.token)
        first = [emulator.emulator.send_message(bot.id, ANN, NOISY, f"n{i}") for i in range(5)]
        quiet = emulator.emulator.send_message(bot.id, ANN, QUIET, "hello")
        window_one = await _settled(relay, bot.id, 6)
        clock.advance(61)
        second = [emulator.emulator.send_message(bot.id, ANN, NOISY, f"m{i}") for i in range(3)]
        everything = await _settled(relay, bot.id, 9)
        throttled = await relay.updates(bot.id, status="throttled")
        announced = await _events(relay, "chat.throttled")
        handled = await _events(relay, "message.received")
        webhook = emulator.emulator.webhook_info(bot.id)
        counted = _kept_back(relay, bot.id, "throttled")

    ids = [u["update_id"] for u in first]
    later = [u["update_id"] for u in second]
    assert window_one == [
        (ids[0], "processed"),
        (ids[1], "processed"),
        (ids[2], "throttled"),
        (ids[3], "throttled"),
        (ids[4], "throttled"),
        (quiet["update_id"], "processed"),
    ]
    assert everything == [
        *window_one,
        (later[0], "processed"),
        (later[1], "processed"),
        (later[2], "throttled"),
    ]
    assert [u["update_id"] for u in throttled] == [ids[2], ids[3], ids[4], later[2]]
    # Acknowledged: Telegram holds nothing back and saw no error.
    assert (webhook["pending_update_count"], webhook.get("last_error_message")) == (0, None)
    assert [(kind, data["chat_id"], data["update_id"]) for kind, data in announced] == [
        ("chat.throttled", NOISY["id"], ids[2]),
        ("chat.throttled", NOISY["id"], later[2]),
    ]
    assert {k: v for k, v in announced[0][1].items() if k != "window_started_at"} == {
        "bot_id": bot.id,
        "chat_id": NOISY["id"],
        "update_id": ids[2],
        "limit": 2,
        "window_seconds": 60.0,
    }
    assert [data["update_id"] for _, data in handled] == [
        ids[0],
        ids[1],
        quiet["update_id"],
        later[0],
        later[1],
    ]
    assert counted == 4


async def test_the_same_message_under_a_new_update_id_is_stored_and_marked_duplicate(
    emulator: RunningEmulator, tmp_path: Path, database_url: str | None
) -> None:
    """A message sent again under a new update_id (same chat, message_id and edit_date) is
    stored and marked duplicate without being handled; its edit, the same message_id in
    another chat, and an update without a message are processed; a copy of the edit is a
    duplicate too."""
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        inbound_deduplicate=True,
        database_url=database_url,
    )
    message = {"message_id": 10, "date": 1700000000, "chat": NOISY, "from": ANN, "text": "hi"}
    edited = message | {"edit_date": 1700000060, "text": "hi!"}
    async with running_tgrelay(settings, port) as relay:
        bot = emulator.emulator.create_bot("dedup_bot")
        await relay.connect_bot(bot.token)
        inject = emulator.emulator.inject_update
        sent = [
            inject(bot.id, {"message": message}),
            inject(bot.id, {"message": message}),
            inject(bot.id, {"edited_message": edited}),
            inject(bot.id, {"edited_message": edited}),
            inject(bot.id, {"message": message | {"chat": QUIET}}),
            inject(bot.id, {"callback_query": {"id": "q1", "from": ANN, "chat_instance": "1"}}),
            inject(bot.id, {"message": message}),
        ]
        settled = await _settled(relay, bot.id, len(sent))
        duplicates = await relay.updates(bot.id, status="duplicate")
        handled = await _events(relay, "message.received", "message.edited")
        counted = _kept_back(relay, bot.id, "duplicate")

    ids = [u["update_id"] for u in sent]
    assert settled == [
        (ids[0], "processed"),
        (ids[1], "duplicate"),
        (ids[2], "processed"),
        (ids[3], "duplicate"),
        (ids[4], "processed"),
        (ids[5], "processed"),
        (ids[6], "duplicate"),
    ]
    assert [u["update_id"] for u in duplicates] == [ids[1], ids[3], ids[6]]
    assert [(kind, data["update_id"]) for kind, data in handled] == [
        ("message.received", ids[0]),
        ("message.edited", ids[2]),
        ("message.received", ids[4]),
    ]
    assert counted == 3


async def test_limits_are_off_by_default(emulator: RunningEmulator, tmp_path: Path) -> None:
    """Without the settings, a burst of one chat and a repeated message are all processed."""
    port = free_port()
    message = {"message_id": 10, "date": 1700000000, "chat": NOISY, "from": ANN, "text": "hi"}
    async with running_tgrelay(
        settings_for(emulator, tmp_path, webhook=False, port=port), port
    ) as relay:
        bot = emulator.emulator.create_bot("open_bot")
        await relay.connect_bot(bot.token)
        sent = [emulator.emulator.inject_update(bot.id, {"message": message}) for _ in range(40)]
        settled = await _settled(relay, bot.id, len(sent))
    assert settled == [(u["update_id"], "processed") for u in sent]


async def _webhook_relay(
    stack: AsyncExitStack, emulator: RunningEmulator, tmp_path: Path, **overrides: Any
) -> Tgrelay:
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=True,
        port=port,
        telegram_source_networks=TELEGRAM_NETWORKS,
        **overrides,
    )
    return await stack.enter_async_context(running_tgrelay(settings, port))


async def _push(relay: Tgrelay, bot_id: int, secret: str, update_id: int, **headers: str) -> int:
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        answer = await client.post(
            f"/telegram/{bot_id}",
            json={
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "date": 1,
                    "chat": QUIET,
                    "from": ANN,
                    "text": "x",
                },
            },
            headers={"X-Telegram-Bot-Api-Secret-Token": secret, **headers},
        )
        return answer.status_code


async def test_webhook_requests_from_outside_telegrams_networks_get_403(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """With Telegram's networks as the only sources, a push from 127.0.0.1 gets 403 and is not
    stored, even with the right secret; an X-Forwarded-For naming Telegram changes nothing
    while FORWARDED_ALLOW_IPS is unset."""
    async with AsyncExitStack() as stack:
        relay = await _webhook_relay(stack, emulator, tmp_path)
        bot = emulator.emulator.create_bot("guarded_bot")
        await relay.connect_bot(bot.token)
        emulator.emulator.send_message(bot.id, ANN, QUIET, "from loopback")

        async def refused() -> bool:
            error = emulator.emulator.webhook_info(bot.id).get("last_error_message")
            return error == "Wrong response from the webhook: 403 Forbidden"

        await eventually(refused)
        config = emulator.emulator.webhook_of(bot.id)
        assert config is not None
        assert config.secret_token is not None
        forged = await _push(
            relay, bot.id, config.secret_token, 900, **{"X-Forwarded-For": "149.154.167.50"}
        )
        stored = await relay.updates(bot.id)
        rejected = relay.runtime.metrics.registry.get_sample_value(
            "tgrelay_updates_received_total", {"source": "webhook", "outcome": "rejected_403"}
        )
    assert (forged, stored) == (403, [])
    assert (rejected or 0) >= 2  # the emulator's push (and its retries), then the forged one


async def test_source_check_honours_forwarded_allow_ips(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Behind a trusted proxy (FORWARDED_ALLOW_IPS=127.0.0.1) the forwarded client address is
    judged: one in Telegram's networks is stored, one outside gets 403 and is not. The 403
    writes no audit row (a flood from anywhere must not grow the database), while a wrong
    secret from Telegram's networks, refused after it, is audited with that address."""
    async with AsyncExitStack() as stack:
        relay = await _webhook_relay(stack, emulator, tmp_path, forwarded_allow_ips="127.0.0.1")
        bot = emulator.emulator.create_bot("proxied_bot")
        await relay.connect_bot(bot.token)
        config = emulator.emulator.webhook_of(bot.id)
        assert config is not None
        assert config.secret_token is not None
        secret = config.secret_token
        from_telegram = await _push(
            relay, bot.id, secret, 901, **{"X-Forwarded-For": "91.108.6.12"}
        )
        from_elsewhere = await _push(
            relay, bot.id, secret, 902, **{"X-Forwarded-For": "203.0.113.9"}
        )
        stored = [u["update_id"] for u in await relay.updates(bot.id)]
        wrong_secret = await _push(
            relay, bot.id, "not-the-secret", 903, **{"X-Forwarded-For": "91.108.6.13"}
        )

        async def rejections() -> list[tuple[int, str | None]]:
            """Every workspace's intake.rejected rows (and those of none), from the table."""
            log = tables.audit_log
            async with relay.runtime.db.engine.connect() as conn:
                rows = await conn.execute(
                    select(log.c.detail, log.c.remote_addr).where(log.c.action == "intake.rejected")
                )
                return [(orjson.loads(r.detail)["status"], r.remote_addr) for r in rows]

        async def audited() -> bool:  # tallies are flushed together, the 403's first if at all
            return bool(await rejections())

        await eventually(audited)
        audited_rejections = await rejections()
    assert (from_telegram, from_elsewhere, wrong_secret, stored) == (200, 403, 401, [901])
    assert audited_rejections == [(401, "91.108.6.13")]
