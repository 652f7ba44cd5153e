"""Fault test: SIGKILL `tgrelay serve` while customers and agents talk through a desk; every
message is relayed, in order per ticket, and at most the sends tgrelay logged as possibly
doubled arrive twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from tgrelay.testing.emulator_server import RunningEmulator

from .harness import eventually, free_port
from .test_crash_recovery import Server

CUSTOMERS = 8
ROUNDS = 6  # messages each way per ticket
KILLS = 2
ADMIN = {"id": 4242, "is_bot": False, "first_name": "Dana", "username": "dana"}
AGENT = {"id": 4343, "is_bot": False, "first_name": "Bob", "username": "bob"}
DUPLICATE_LOG = "telegram.possible_duplicate_send"
WAIT_SECONDS = 120.0


def customer(index: int) -> dict[str, Any]:
    return {"id": 610_000 + index, "is_bot": False, "first_name": f"Customer{index}"}


async def _json(api: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await api.request(method, path, **kwargs)
    assert response.is_success, response.text
    return response.json()


async def _forum_desk(api: httpx.AsyncClient, emulator: RunningEmulator, bot_id: int) -> int:
    """Link a forum through a connect session and make it the bot's desk; the forum's id."""
    telegram = emulator.emulator
    session = await _json(api, "POST", "/v1/connect-sessions", json={"bot_id": bot_id})
    telegram.send_message(bot_id, ADMIN, None, f"/start {session['token']}")

    async def state() -> str:
        found = await _json(api, "GET", f"/v1/connect-sessions/{session['id']}")
        return str(found["state"])

    await eventually(lambda: _is(state, "waiting_group"), timeout=WAIT_SECONDS)
    chat = telegram.create_chat("supergroup", "Support", is_forum=True)
    telegram.add_bot(chat["id"], bot_id, ADMIN, status="administrator")
    await eventually(lambda: _is(state, "connected"), timeout=WAIT_SECONDS)
    connection = (await _json(api, "GET", f"/v1/connect-sessions/{session['id']}"))["connection"]
    await _json(
        api,
        "POST",
        "/v1/support/desks",
        json={"bot_id": bot_id, "connection_id": connection["id"], "greeting_text": None},
    )
    return int(chat["id"])


async def _is(read: Any, wanted: str) -> bool:
    return bool(await read() == wanted)


def _texts(emulator: RunningEmulator, chat_id: int, bot_id: int) -> list[tuple[int | None, str]]:
    return [
        (m.get("message_thread_id"), m.get("text") or m.get("caption") or "")
        for m in emulator.emulator.sent_messages(chat_id, bot_id=bot_id)
    ]


@pytest.mark.slow
async def test_sigkill_while_a_desk_relays_loses_and_doubles_nothing_unlogged(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """Customers and an agent exchange messages while the server is killed twice: every
    message reaches the other side, in order per ticket, and a copy arrives twice only
    where a send was logged as possibly doubled (killed between Telegram's answer and the
    commit)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(tmp_path),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_TELEGRAM_API_URL": emulator.base_url,
        "TGRELAY_PUBLIC_URL": base_url,
        "TGRELAY_PORT": str(port),
        "TGRELAY_JOB_LEASE_SECONDS": "2",
        "TGRELAY_LOG_LEVEL": "WARNING",
        # The desk's forum takes 20 bot messages a minute from Telegram: the flows, not the
        # limits, are under test here.
        "TGRELAY_SEND_LIMIT_PER_CHAT": "[1000, 1]",
        "TGRELAY_SEND_LIMIT_PER_GROUP": "[1000, 1]",
        "TGRELAY_SEND_LIMIT_PER_BOT": "[1000, 1]",
    }
    created = subprocess.run(
        [sys.executable, "-m", "tgrelay", "workspace", "create", "desk-faults", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
    log = tmp_path / "server.log"
    server = Server(env, log)
    await server.start(base_url)
    telegram = emulator.emulator
    try:
        bot = telegram.create_bot("desk_fault_bot")
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as api:
            await _json(api, "POST", "/v1/bots", json={"token": bot.token})
            forum = await _forum_desk(api, emulator, bot.id)
            for i in range(CUSTOMERS):
                telegram.send_message(bot.id, customer(i), None, f"c{i}-0")

            async def topics() -> dict[int, int] | None:
                page = await _json(api, "GET", "/v1/tickets", params={"limit": 200})
                found = {int(t["customer"]["id"]): t["topic_id"] for t in page["tickets"]}
                if len(found) < CUSTOMERS or None in found.values():
                    return None
                return found

            async def all_topics() -> bool:
                return await topics() is not None

            await eventually(all_topics, timeout=WAIT_SECONDS)
            thread_of = await topics()
            assert thread_of is not None

            async def talk() -> None:
                for n in range(1, ROUNDS + 1):
                    for i in range(CUSTOMERS):
                        telegram.send_message(bot.id, customer(i), None, f"c{i}-{n}")
                        telegram.send_message(
                            bot.id,
                            AGENT,
                            {"id": forum},
                            f"a{i}-{n}",
                            message_thread_id=thread_of[customer(i)["id"]],
                        )
                        await asyncio.sleep(0.01)  # a conversation, not one burst

            async def kill_twice() -> None:
                for _ in range(KILLS):
                    await asyncio.sleep(0.4)
                    server.kill()
                    await server.start(base_url)

            await asyncio.gather(talk(), kill_twice())

            def copies() -> tuple[dict[int, list[str]], dict[int, list[str]]]:
                in_topics: dict[int, list[str]] = {}
                for thread, text in _texts(emulator, forum, bot.id):
                    if thread is not None and text.startswith("c"):
                        in_topics.setdefault(thread, []).append(text)
                to_customers = {
                    i: [
                        t
                        for _, t in _texts(emulator, customer(i)["id"], bot.id)
                        if t.startswith("a")
                    ]
                    for i in range(CUSTOMERS)
                }
                return in_topics, to_customers

            async def everything_arrived() -> bool:
                in_topics, to_customers = copies()
                return all(
                    set(in_topics.get(thread_of[customer(i)["id"]], []))
                    >= {f"c{i}-{n}" for n in range(ROUNDS + 1)}
                    and set(to_customers[i]) >= {f"a{i}-{n}" for n in range(1, ROUNDS + 1)}
                    for i in range(CUSTOMERS)
                )

            await eventually(everything_arrived, timeout=WAIT_SECONDS)
    finally:
        server.stop()

    in_topics, to_customers = copies()
    doubled = 0
    for i in range(CUSTOMERS):
        for got, wanted in (
            (in_topics[thread_of[customer(i)["id"]]], [f"c{i}-{n}" for n in range(ROUNDS + 1)]),
            (to_customers[i], [f"a{i}-{n}" for n in range(1, ROUNDS + 1)]),
        ):
            first_seen = list(dict.fromkeys(got))
            assert first_seen == wanted, (i, got)  # all of them, in order
            doubled += sum(count - 1 for count in Counter(got).values())
    logged = log.read_text(errors="replace").count(DUPLICATE_LOG)
    assert doubled <= logged
