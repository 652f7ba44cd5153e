"""End to end through the emulator, `serve`'s app and workers, and examples/flow_app.py as the
team's app: the shipped billing-address flow, from /billing to the saved address, with
conversation.completed delivered to the app's endpoint."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.responses import Response

from tgrelay.conversations import checks, runtime, store
from tgrelay.db import tables
from tgrelay.testing import receiver
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.serving import serving

from .harness import HeldPort, Tgrelay, eventually, free_port, running_tgrelay, settings_for

ROOT = Path(__file__).parents[2]
FLOW = ROOT / "examples" / "flows" / "billing_address.json"
APP = ROOT / "examples" / "flow_app.py"
SHIPPED_ORIGIN = "http://127.0.0.1:8765"
ADA: dict[str, Any] = {"id": 8101, "is_bot": False, "first_name": "Ada", "language_code": "en"}
GENEROUS = (1000, 1.0)  # flows, not limits


def load_flow_app() -> ModuleType:
    """Import the example from its file, as `python examples/flow_app.py` runs it."""
    spec = importlib.util.spec_from_file_location("example_flow_app", APP)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True, kw_only=True)
class Team:
    relay: Tgrelay
    books: Any  # flow_app.Books: what the example saved and received
    bot_id: int


@pytest.fixture
async def team(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Team]:
    """tgrelay (polling, workers on), the example app on its own port with an endpoint of
    its origin, the shipped flow pointed at it, and a connected bot."""
    port, app_port = free_port(), HeldPort()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        webhooks_allow_private=True,
        send_limit_per_chat=GENEROUS,
        send_limit_per_group=GENEROUS,
    )
    async with running_tgrelay(settings, port) as relay:
        origin = f"http://127.0.0.1:{app_port.port}"
        created = await relay.api.post(
            "/v1/endpoints",
            json={"url": f"{origin}/events", "event_types": ["conversation.*"]},
        )
        assert created.status_code == 201, created.text
        flow_app = load_flow_app()
        books = flow_app.Books()
        app_port.release()
        async with serving(
            flow_app.create_app(created.json()["secret"], books), port=app_port.port
        ):
            await _post_flow(relay, FLOW.read_text().replace(SHIPPED_ORIGIN, origin))
            bot = emulator.emulator.create_bot("billing_bot")
            await relay.connect_bot(bot.token)
            yield Team(relay=relay, books=books, bot_id=bot.id)


async def _post_flow(relay: Tgrelay, document: str) -> None:
    """Store the flow as POST /v1/flows does (its route is another module's)."""
    flow = checks.parse(document)
    assert flow.trigger.type == "command"
    rt = relay.runtime
    async with rt.db.transaction() as conn:
        await store.add_flow(
            conn,
            {
                "id": "flw_billing_1",
                "workspace_id": relay.workspace_id,
                "name": flow.name,
                "version": 1,
                "document": document,
                "trigger_kind": "command",
                "trigger_value": flow.trigger.command,
                "created_at": rt.clock(),
            },
        )


def test_the_shipped_flow_parses_and_calls_one_origin() -> None:
    """billing_address.json is a valid flow whose calls share one origin, so one endpoint
    of the workspace signs them all."""
    flow = checks.parse(FLOW.read_text())
    urls = [step.url for step in flow.steps if step.kind == "call"]

    assert [url.removeprefix(SHIPPED_ORIGIN) for url in urls] == [
        "/flows/billing-address/validate",
        "/flows/billing-address/save",
    ]


async def test_the_billing_address_flow_end_to_end(team: Team, emulator: RunningEmulator) -> None:
    """Ada's /billing collects street, postal code, city and country (a button), the app
    validates them, she confirms with Save, the app saves the address once, she is thanked,
    and the app's endpoint receives conversation.started and conversation.completed."""
    telegram = emulator.emulator

    def sent() -> list[dict[str, Any]]:
        return telegram.sent_messages(ADA["id"], bot_id=team.bot_id)

    async def answer(text: str, count: int) -> None:
        telegram.send_message(team.bot_id, ADA, None, text)
        await eventually(lambda: _at_least(sent, count))

    async def press(data: str, count: int) -> None:
        message = sent()[-1]
        telegram.press_button(team.bot_id, ADA, ADA["id"], message["message_id"], data)
        await eventually(lambda: _at_least(sent, count))

    await answer("/billing", 1)
    await answer("1 Main Street", 2)
    await answer("10115", 3)
    await answer("Berlin", 4)
    await press("cv:country:DE", 5)
    await press("cv:confirm:yes", 6)

    async def delivered() -> bool:
        return [e["type"] for e in team.books.events] == [
            "conversation.started",
            "conversation.completed",
        ]

    await eventually(delivered)
    address = {"street": "1 Main Street", "zip": "10115", "city": "Berlin", "country": "DE"}
    formatted = "1 Main Street\n10115 Berlin\nGermany"
    assert [(m["text"], _buttons(m)) for m in sent()] == [
        ("Hi Ada! What is the street and house number of your billing address?", []),
        ("The postal code?", []),
        ("The city?", []),
        (
            "And the country?",
            ["cv:country:DE", "cv:country:FR", "cv:country:GB", "cv:country:US"],
        ),
        (f"Save this billing address?\n\n{formatted}", ["cv:confirm:yes", "cv:confirm:no"]),
        ("Saved. Thank you, Ada!", []),
    ]
    assert team.books.addresses == {ADA["id"]: address}
    completed = team.books.events[1]["data"]
    assert completed == {
        "flow": "billing-address",
        "version": 1,
        "chat_id": ADA["id"],
        "user_id": ADA["id"],
        "variables": {**address, "address_ok": True, "formatted": formatted, "problem": ""},
    }


async def _at_least(sent: Any, count: int) -> bool:
    return len(sent()) >= count


def _buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row]


async def test_the_same_update_twice_moves_the_conversation_once(
    team: Team, emulator: RunningEmulator
) -> None:
    """Telegram re-sends Ada's street answer (same update_id) after it moved the conversation:
    it is absorbed, so the street is not taken again as her postal code (which would have
    been refused with the retry message), and her next answer moves on as usual."""
    telegram = emulator.emulator

    def sent() -> list[dict[str, Any]]:
        return telegram.sent_messages(ADA["id"], bot_id=team.bot_id)

    telegram.send_message(team.bot_id, ADA, None, "/billing")
    await eventually(lambda: _at_least(sent, 1))
    street = telegram.send_message(team.bot_id, ADA, None, "1 Main Street")
    await eventually(lambda: _at_least(sent, 2))
    telegram.inject_update(team.bot_id, street)  # the very same update again
    telegram.send_message(team.bot_id, ADA, None, "10115")
    await eventually(lambda: _at_least(sent, 3))

    async with team.relay.runtime.db.engine.connect() as conn:
        [row] = await store.list_conversations(conn, team.relay.workspace_id, limit=5)
        moves = await store.history(conn, row.id)
    assert [m["text"] for m in sent()] == [
        "Hi Ada! What is the street and house number of your billing address?",
        "The postal code?",
        "The city?",
    ]
    assert [(m.from_step, m.to_step) for m in moves] == [
        (None, "street"),
        ("street", "zip"),
        ("zip", "city"),
    ]


class _Outage:
    """An app that answers 503 while `down`, else sets the city."""

    def __init__(self) -> None:
        self.down = True

    async def __call__(self, _delivery: receiver.Delivery) -> Response:
        if self.down:
            return Response(status_code=503)
        return Response(content=b'{"variables": {"city": "Berlin"}}', media_type="application/json")


async def test_every_conversation_completes_after_a_ten_minute_outage(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """While the app answers 503, each user waiting on a call gets the fallback text; ten
    minutes later (a moved clock: the durable retries ran meanwhile) the app is back, and
    every conversation completes."""
    clock = Clock()  # real time, plus what the test adds
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        webhooks_allow_private=True,
        send_limit_per_chat=GENEROUS,
        send_limit_per_group=GENEROUS,
    )
    outage = _Outage()
    users = [{"id": 8300 + i, "is_bot": False, "first_name": f"U{i}"} for i in range(10)]
    telegram = emulator.emulator
    async with (
        running_tgrelay(settings, port, clock=clock) as relay,
        receiver.receiving(outage) as app,
    ):
        created = await relay.api.post(
            "/v1/endpoints", json={"url": f"{app.base_url}/events", "event_types": ["bot.*"]}
        )
        assert created.status_code == 201, created.text
        document = json.dumps(_lookup(app.url))
        await _post_flow(relay, document)
        bot = emulator.emulator.create_bot("outage_bot")
        await relay.connect_bot(bot.token)

        def texts(user: dict[str, Any]) -> list[str]:
            return [m["text"] for m in telegram.sent_messages(user["id"], bot_id=bot.id)]

        def all_have(count: int) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                return all(len(texts(user)) >= count for user in users)

            return check

        for user in users:
            telegram.send_message(bot.id, user, None, "/lookup")
        await eventually(all_have(1))
        for user in users:
            telegram.send_message(bot.id, user, None, "10115")
        await eventually(all_have(2))  # the fallback, after the first failed attempt

        for _ in range(10):  # ten minutes down: each call retried on its backoff meanwhile
            await _advance(relay, clock, 60)
            await eventually(_all_retried(relay, clock))
        outage.down = False
        for _ in range(3):  # a minute covers the breaker's probe, another its followers
            await _advance(relay, clock, 60)  # past every call's next attempt (pauses cap at 60 s)
            await eventually(_all_retried(relay, clock))
            if await all_have(3)():
                break
        await eventually(all_have(3))

    assert [texts(user) for user in users] == [
        ["Postal code?", "One moment, the register is slow.", "You live in Berlin."]
    ] * len(users)


def _lookup(url: str) -> dict[str, Any]:
    return {
        "name": "lookup",
        "trigger": {"type": "command", "command": "/lookup"},
        "steps": [
            {
                "id": "zip",
                "kind": "ask",
                "message": "Postal code?",
                "input": {"type": "text"},
                "variable": "zip",
            },
            {
                "id": "check",
                "kind": "call",
                "url": url,
                "timeout_seconds": 2,
                "sets": ["city"],
                "fallback_text": "One moment, the register is slow.",
                "deadline_seconds": 1800,
            },
            {"id": "done", "kind": "end", "message": "You live in {{ city }}."},
        ],
    }


async def _advance(relay: Tgrelay, clock: Clock, seconds: float) -> None:
    """Move the clock once no job is running: a minute's jump in an instant would outlast the
    lease (60 s) of a send in flight, which no heartbeat could have renewed, and the send
    would go twice (logged as a possible duplicate), as it would after a real stall."""

    async def idle() -> bool:
        async with relay.runtime.db.engine.connect() as conn:
            running = await conn.scalar(
                select(func.count())
                .select_from(tables.jobs)
                .where(tables.jobs.c.state == "running")
            )
        return running == 0

    await eventually(idle)
    clock.advance(seconds)


def _all_retried(relay: Tgrelay, clock: Clock) -> Callable[[], Awaitable[bool]]:
    """No call job is due any more at the clock's time: each ran and was rescheduled."""

    async def check() -> bool:
        async with relay.runtime.db.engine.connect() as conn:
            due = await conn.scalar(
                select(func.count())
                .select_from(tables.jobs)
                .where(
                    tables.jobs.c.kind == runtime.CALL,
                    tables.jobs.c.state.in_(("pending", "running")),
                    tables.jobs.c.run_at <= clock(),
                )
            )
        return due == 0

    return check
