"""End to end through the emulator and the worker, with both clocks moved: a desk's SLA
policy set through the API, a ticket's first response clock shown by GET /v1/tickets/{id},
a warning ten minutes ahead, the breach, and a second step five minutes after it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tests.support.desks import ADA
from tgrelay.db import tables
from tgrelay.support import ticket_store
from tgrelay.support.models import Ticket
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator.state import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

from .desks import make_desk
from .harness import eventually, free_port, running_tgrelay, settings_for

GENEROUS = (1000, 1.0)  # the limiter stays on with short turns (see test_support_e2e)
STEP_SECONDS = 30.0
HOUR = 3600
LADDER = [
    {"warn_before_seconds": 600, "action": "mention", "users": ["@lead_agent"]},
    {"after_seconds": 300, "action": "mention", "users": ["@duty_manager"]},
]


def _texts(emulator: RunningEmulator, chat_id: int, bot: BotRecord) -> list[str]:
    return [m.get("text", "") for m in emulator.emulator.sent_messages(chat_id, bot_id=bot.id)]


def _stamp(value: Any) -> str:
    return str(value.isoformat().replace("+00:00", "Z"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_breach_escalates_through_a_warning_and_a_mention(
    emulator: RunningEmulator, tmp_path: Path, clock: Clock
) -> None:
    """With a one-hour first response target: the topic mentions the lead at 50 minutes, the
    header says breached and ticket.sla_breached is recorded at 60, the duty manager is
    mentioned at 65; the API shows the clock before and after."""
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        send_limit_per_group=GENEROUS,
        send_limit_per_chat=GENEROUS,
    )
    async with running_tgrelay(settings, port, clock=clock) as relay:
        made = await make_desk(relay, emulator, greeting_text=None)
        bot, chat_id, desk_id = made.bot, made.chat_id, made.id
        put = await relay.api.put(
            f"/v1/support/desks/{desk_id}/sla",
            json={"first_response": HOUR, "escalation": LADDER},
        )
        assert put.status_code == 201, put.text
        emulator.emulator.send_message(bot.id, ADA, None, "my order never arrived")

        async def ticket_now() -> Ticket | None:
            async with relay.runtime.db.engine.connect() as conn:
                return await ticket_store.latest_of_customer(conn, bot.id, ADA["id"])

        async def opened() -> bool:
            found = await ticket_now()
            return found is not None and found.header_message_id is not None

        await eventually(opened, timeout=STEP_SECONDS)
        ticket = await ticket_now()
        assert ticket is not None
        due = ticket.created_at + timedelta(seconds=HOUR)
        before = (await relay.api.get(f"/v1/tickets/{ticket.id}")).json()["sla"]

        def moved(seconds: float) -> None:
            clock.advance(seconds)
            emulator.emulator.clock.advance(seconds)

        moved((due - clock()).total_seconds() - 600)
        warning = f"⏰ SLA: first response due {due.strftime('%Y-%m-%d %H:%M UTC')}"

        async def warned() -> bool:
            return any(t.startswith(warning) for t in _texts(emulator, chat_id, bot))

        await eventually(warned, timeout=STEP_SECONDS)
        moved(600 + 300)

        async def escalated() -> bool:
            return any(t.endswith("@duty_manager") for t in _texts(emulator, chat_id, bot))

        await eventually(escalated, timeout=STEP_SECONDS)
        after = (await relay.api.get(f"/v1/tickets/{ticket.id}")).json()["sla"]
        async with relay.runtime.db.engine.connect() as conn:
            breached = (
                await conn.scalars(
                    select(tables.events.c.body).where(
                        tables.events.c.type == "ticket.sla_breached"
                    )
                )
            ).all()
        texts = _texts(emulator, chat_id, bot)

    subject = "ticket #1 my order never arrived"
    stamp, day = due.strftime("%H:%M UTC"), due.strftime("%Y-%m-%d %H:%M UTC")
    clock_view = {
        "metric": "first_response",
        "started_at": _stamp(ticket.created_at),
        "due_at": _stamp(due),
        "paused": False,
        "met_at": None,
        "breached_at": None,
    }
    assert before == [clock_view]
    assert after == [{**clock_view, "breached_at": _stamp(due)}]
    assert texts[0].endswith(f"⏱ First response: breached {stamp}")  # the header, edited
    assert texts[-2:] == [
        f"⏰ SLA: first response due {day} · {subject} @lead_agent",
        f"⏰ SLA: first response breached (was due {day}) · {subject} @duty_manager",
    ]
    assert [orjson.loads(body)["data"] for body in breached] == [
        {
            "ticket_id": ticket.id,
            "metric": "first_response",
            "due_at": _stamp(due),
            "breached_at": _stamp(due),
        }
    ]
