"""End to end through the emulator and the worker: an auto-answer deflects a ticket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.desks import ADA, CLOSING, GREETING
from tgrelay.support import kb_answers, ticket_store
from tgrelay.support.models import Ticket
from tgrelay.testing.emulator_server import RunningEmulator

from .desks import make_desk
from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

GENEROUS = (1000, 1.0)  # flows, not limits (as tests/e2e/test_support_e2e.py)
STEP_SECONDS = 30.0
RESET = {
    "title": "Reset your password",
    "body": "Open Settings › Security and press Reset password.",
    "auto_answer": True,
}
OTHERS = [
    {"title": "Billing", "body": "Invoices are emailed monthly."},
    {"title": "Delivery times", "body": "Orders ship within two days."},
]


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    settings = settings_for(
        emulator,
        tmp_path,
        webhook=False,
        port=port,
        send_limit_per_group=GENEROUS,
        send_limit_per_chat=GENEROUS,
    )
    async with running_tgrelay(settings, port) as found:
        yield found


async def _ticket(relay: Tgrelay, bot_id: int) -> Ticket | None:
    async with relay.runtime.db.engine.connect() as conn:
        return await ticket_store.latest_of_customer(conn, bot_id, ADA["id"])


def _sent(emulator: RunningEmulator, chat_id: int, bot_id: int) -> list[dict[str, Any]]:
    return emulator.emulator.sent_messages(chat_id, bot_id=bot_id)


async def test_an_auto_answer_deflects_a_ticket(relay: Tgrelay, emulator: RunningEmulator) -> None:
    """The customer's first message gets the auto_answer article and the question at once;
    their Yes resolves the ticket as deflected (closing text, buttons gone, the topic told),
    and the API shows it."""
    # Auto-answers on: any score above 0 answers.
    made = await make_desk(
        relay,
        emulator,
        greeting_text=GREETING,
        closing_text=CLOSING,
        kb_auto_answer_threshold=0,
        kb_answer_wait_seconds=600,
    )
    bot_id, chat_id = made.bot.id, made.chat_id
    ids = []
    for values in (RESET, *OTHERS):
        created = await relay.api.post("/v1/support/articles", json=values)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    reset_id = ids[0]

    emulator.emulator.send_message(bot_id, ADA, None, "I forgot my password, please help")

    def questions() -> list[dict[str, Any]]:
        sent = _sent(emulator, ADA["id"], bot_id)
        return [m for m in sent if m.get("text") == kb_answers.QUESTION]

    async def asked() -> bool:
        return bool(questions())

    await eventually(asked, timeout=STEP_SECONDS)
    [question] = questions()
    ticket = await _ticket(relay, bot_id)
    assert ticket is not None
    assert [m.get("text") for m in _sent(emulator, ADA["id"], bot_id)] == [
        GREETING,
        "Reset your password\n\nOpen Settings › Security and press Reset password.",
        kb_answers.QUESTION,
    ]

    update = emulator.emulator.press_button(
        bot_id, ADA, ADA["id"], question["message_id"], f"kb:yes:{ticket.id}"
    )
    query_id = update["callback_query"]["id"]
    said_yes = kb_answers.SAID_YES.format(title=RESET["title"])

    async def deflected() -> bool:
        now = await _ticket(relay, bot_id)
        texts = [m.get("text") for m in _sent(emulator, ADA["id"], bot_id)]
        return bool(
            now is not None
            and now.resolution_note == "deflected"
            and emulator.emulator.callback_answer(query_id) is not None
            and CLOSING in texts
            and said_yes in [m.get("text") for m in _sent(emulator, chat_id, bot_id)]
        )

    await eventually(deflected, timeout=STEP_SECONDS)
    resolved = await _ticket(relay, bot_id)
    assert resolved is not None
    view = await relay.api.get(f"/v1/support/tickets/{ticket.id}/auto_answer")
    ticket_view = await relay.api.get(f"/v1/tickets/{ticket.id}")
    topic_texts = [m.get("text", "") for m in _sent(emulator, chat_id, bot_id)]
    answer = emulator.emulator.callback_answer(query_id)
    assert answer is not None
    assert (ticket_view.json()["status"], ticket_view.json()["resolution_note"]) == (
        "resolved",
        "deflected",
    )
    assert (view.status_code, view.json()["article_id"], view.json()["outcome"]) == (
        200,
        reset_id,
        "deflected",
    )
    assert answer["text"] == kb_answers.THANKS
    assert relay.runtime.metrics.support_deflections._value.get() == 1
    assert any(t.startswith("🤖 Answered automatically") for t in topic_texts)
    assert said_yes in topic_texts

    async def buttons_gone() -> bool:
        after = [
            m
            for m in _sent(emulator, ADA["id"], bot_id)
            if m["message_id"] == question["message_id"]
        ]
        return bool(after) and not after[0].get("reply_markup")

    await eventually(buttons_gone, timeout=STEP_SECONDS)
