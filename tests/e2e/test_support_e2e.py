"""End to end through the emulator and the worker: a customer's ticket in a forum topic,
answered, edited, resolved and reopened; a blocked customer; apps answering through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.desks import ADA, BOB, CAT, CLOSING, GREETING
from tgrelay.support import header, ticket_store
from tgrelay.support import relay as relay_marks
from tgrelay.support.models import Assignment, Ticket
from tgrelay.testing.emulator.state import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator

from .desks import Desk, make_desk
from .harness import Tgrelay, eventually, free_port, running_tgrelay, settings_for

# These tests are about flows, not limits: at Telegram's pace (a group's 20 bot messages a
# minute, a private chat's one a second) each step's sends would wait their turns for tens of
# seconds. The limiter stays on; its turns are just short. The emulator enforces no flood
# limits unless told to.
GENEROUS = (1000, 1.0)
STEP_SECONDS = 30.0  # a deadline under load, not a pace


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


@pytest.fixture
async def desk(relay: Tgrelay, emulator: RunningEmulator) -> Desk:
    """A desk through the API: claim on reply, a one-hour window, greeting and closing texts."""
    return await make_desk(
        relay,
        emulator,
        name="Help",
        assignment=Assignment.CLAIM_ON_REPLY.value,
        reopen_window_seconds=3600,
        greeting_text=GREETING,
        closing_text=CLOSING,
    )


async def _ticket(relay: Tgrelay, desk: Desk) -> Ticket | None:
    async with relay.runtime.db.engine.connect() as conn:
        return await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])


async def _api(relay: Tgrelay, path: str) -> Any:
    response = await relay.api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def _texts(emulator: RunningEmulator, chat_id: int, bot: BotRecord) -> list[str]:
    return [
        m.get("text", m.get("caption", ""))
        for m in emulator.emulator.sent_messages(chat_id, bot_id=bot.id)
    ]


async def _opened(relay: Tgrelay, emulator: RunningEmulator, desk: Desk) -> Ticket:
    """Ada writes; once the ticket's topic, header, copy and greeting exist, the ticket."""
    emulator.emulator.send_message(desk.bot.id, ADA, None, "my order never arrived")

    async def relayed() -> bool:
        ticket = await _ticket(relay, desk)
        if ticket is None or ticket.header_message_id is None:
            return False
        messages = await _api(relay, f"/v1/tickets/{ticket.id}/messages")
        # The greeting is the ticket's last send of the opening.
        greeted = GREETING in _texts(emulator, ADA["id"], desk.bot)
        return bool(messages[0]["relay_status"] == "sent") and greeted

    await eventually(relayed, timeout=STEP_SECONDS)
    ticket = await _ticket(relay, desk)
    assert ticket is not None
    return ticket


async def test_a_ticket_is_answered_edited_resolved_and_reopened(
    relay: Tgrelay, emulator: RunningEmulator, desk: Desk
) -> None:
    """Topic with header and copy; the agent's answer reaches the customer (open, claimed,
    first response); an edit is mirrored and versioned; /resolve closes and marks the
    topic and says the closing text; the customer's next message reopens it."""
    ticket = await _opened(relay, emulator, desk)
    thread = ticket.topic_thread_id
    [topic] = emulator.emulator.chat(desk.chat_id)["topics"]
    in_topic = _texts(emulator, desk.chat_id, desk.bot)
    assert topic["name"] == "#1 Ada Lovelace · my order never arrived"
    assert in_topic[:2] == [header.header_text(ticket, assignee=None), "my order never arrived"]
    assert _texts(emulator, ADA["id"], desk.bot) == [GREETING]

    emulator.emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "we are on it", message_thread_id=thread
    )

    async def answered() -> bool:
        return "we are on it" in _texts(emulator, ADA["id"], desk.bot)

    await eventually(answered, timeout=STEP_SECONDS)
    view = await _api(relay, f"/v1/tickets/{ticket.id}")
    assert (view["status"], view["assignee"], view["first_response_at"] is not None) == (
        "open",
        BOB["id"],
        True,
    )

    [first, *_] = await _api(relay, f"/v1/tickets/{ticket.id}/messages")
    emulator.emulator.edit_message(
        desk.bot.id, ADA, ADA["id"], first["customer_message_id"], "my order never came"
    )

    async def mirrored() -> bool:
        copy = emulator.emulator.message(desk.chat_id, first["topic_message_id"])
        return bool(copy.get("text") == "my order never came")

    await eventually(mirrored, timeout=STEP_SECONDS)
    [edited, *_] = await _api(relay, f"/v1/tickets/{ticket.id}/messages")
    assert (edited["text"], [v["text"] for v in edited["versions"]]) == (
        "my order never came",
        ["my order never arrived"],
    )

    emulator.emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "/resolve refund sent", message_thread_id=thread
    )

    async def resolved() -> bool:
        [shown] = emulator.emulator.chat(desk.chat_id)["topics"]
        return bool(shown["is_closed"]) and CLOSING in _texts(emulator, ADA["id"], desk.bot)

    await eventually(resolved, timeout=STEP_SECONDS)
    [closed_topic] = emulator.emulator.chat(desk.chat_id)["topics"]
    assert closed_topic["name"] == "✅ #1 Ada Lovelace · my order never arrived"
    assert (await _api(relay, f"/v1/tickets/{ticket.id}"))["status"] == "resolved"

    emulator.emulator.send_message(desk.bot.id, ADA, None, "it broke again")

    async def reopened() -> bool:
        [shown] = emulator.emulator.chat(desk.chat_id)["topics"]
        return not shown["is_closed"] and "it broke again" in _texts(
            emulator, desk.chat_id, desk.bot
        )

    await eventually(reopened, timeout=STEP_SECONDS)
    [open_topic] = emulator.emulator.chat(desk.chat_id)["topics"]
    after = await _api(relay, f"/v1/tickets/{ticket.id}")
    assert (after["status"], after["number"], open_topic["name"]) == (
        "open",
        1,
        "#1 Ada Lovelace · my order never arrived",
    )


async def test_a_blocked_customer_and_apps_answering_through_the_api(
    relay: Tgrelay, emulator: RunningEmulator, desk: Desk
) -> None:
    """A reply to a customer who blocked the bot is marked failed and said in the topic; the
    API answers (once per idempotency key), adds notes, and refuses a move with 409."""
    ticket = await _opened(relay, emulator, desk)
    path = f"/v1/tickets/{ticket.id}"
    emulator.emulator.block_bot(ADA["id"], desk.bot.id)
    emulator.emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "hello?", message_thread_id=ticket.topic_thread_id
    )

    async def failed() -> bool:
        return any(
            t.startswith("⚠️ Not delivered") for t in _texts(emulator, desk.chat_id, desk.bot)
        )

    await eventually(failed, timeout=STEP_SECONDS)
    reply = (await _api(relay, f"{path}/messages"))[-1]
    assert (reply["text"], reply["relay_status"], reply["relay_error"]) == (
        "hello?",
        "failed",
        "copyMessage: Forbidden: bot was blocked by the user",
    )

    emulator.emulator.unblock_bot(ADA["id"], desk.bot.id)
    body = {"text": "Your refund is on its way.", "idempotency_key": "crm-1"}
    first = await relay.api.post(f"{path}/messages", json=body)
    again = await relay.api.post(f"{path}/messages", json=body)
    note = await relay.api.post(f"{path}/messages", json={"text": "VIP", "internal": True})
    assert (first.status_code, again.status_code, note.status_code) == (201, 200, 201)
    assert again.json()["id"] == first.json()["id"]

    async def delivered() -> bool:
        return "Your refund is on its way." in _texts(emulator, ADA["id"], desk.bot) and any(
            t.endswith("VIP") for t in _texts(emulator, desk.chat_id, desk.bot)
        )

    await eventually(delivered, timeout=STEP_SECONDS)
    assert _texts(emulator, ADA["id"], desk.bot).count("Your refund is on its way.") == 1

    pending = await relay.api.patch(path, json={"status": "pending", "assignee": BOB["id"]})
    refused = await relay.api.patch(path, json={"status": "new"})
    assert (pending.status_code, pending.json()["status"], pending.json()["assignee"]) == (
        200,
        "pending",
        BOB["id"],
    )
    assert (refused.status_code, refused.headers["content-type"], refused.json()) == (
        409,
        "application/problem+json",
        {
            "type": "about:blank",
            "title": "Conflict",
            "status": 409,
            "detail": f"ticket {ticket.id} cannot become new: a ticket cannot go back to new "
            "once it was answered or changed",
        },
    )
    other = await relay.api.get("/v1/tickets/tkt_nope")
    listed = await _api(relay, "/v1/tickets?status=pending")
    assert (other.status_code, [t["id"] for t in listed["tickets"]]) == (404, [ticket.id])


async def test_agents_work_a_ticket_with_buttons_notes_snippets_and_commands(
    relay: Tgrelay, emulator: RunningEmulator, desk: Desk
) -> None:
    """An agent takes the ticket with the header's button, keeps a note, answers with a
    snippet, waits on the customer, who answers back, and resolves it with a note: the
    customer gets only what was meant for them, and the topic ends closed and marked."""
    telegram = emulator.emulator
    agent = await relay.api.put(
        f"/v1/support/agents/{CAT['id']}", json={"name": "Cat Agent", "active": True}
    )
    snippet = await relay.api.post(
        "/v1/support/snippets",
        json={"name": "thanks", "text": "Thanks {{ customer.first_name }}, {{ agent.name }} here."},
    )
    assert (agent.status_code, snippet.status_code) == (201, 201)
    ticket = await _opened(relay, emulator, desk)
    assert ticket.header_message_id is not None
    assert ticket.topic_thread_id is not None
    thread = ticket.topic_thread_id
    path = f"/v1/tickets/{ticket.id}"
    press = telegram.press_button(
        desk.bot.id,
        CAT,
        desk.chat_id,
        ticket.header_message_id,
        header.encode(header.Action.ASSIGN_ME, ticket.id),
    )

    async def taken() -> bool:
        answer = telegram.callback_answer(press["callback_query"]["id"])
        return answer is not None and (await _api(relay, path))["assignee"] == CAT["id"]

    await eventually(taken, timeout=STEP_SECONDS)
    for text in ("//they called twice", "/s thanks", "/pending"):
        telegram.send_message(
            desk.bot.id, CAT, {"id": desk.chat_id}, text, message_thread_id=thread
        )

    async def waiting() -> bool:
        return (await _api(relay, path))["status"] == "pending" and (
            "Thanks Ada, Cat Agent here." in _texts(emulator, ADA["id"], desk.bot)
        )

    await eventually(waiting, timeout=STEP_SECONDS)
    telegram.send_message(desk.bot.id, ADA, None, "it came, thank you")

    async def answered_back() -> bool:
        return bool((await _api(relay, path))["status"] == "open")

    await eventually(answered_back, timeout=STEP_SECONDS)
    telegram.send_message(
        desk.bot.id, CAT, {"id": desk.chat_id}, "/resolve delivered late", message_thread_id=thread
    )

    def topic() -> dict[str, Any]:
        topics: list[dict[str, Any]] = telegram.chat(desk.chat_id)["topics"]
        [found] = [t for t in topics if t["message_thread_id"] == thread]
        return found

    async def resolved() -> bool:
        return bool(topic()["is_closed"]) and CLOSING in _texts(emulator, ADA["id"], desk.bot)

    await eventually(resolved, timeout=STEP_SECONDS)
    final = await _api(relay, path)
    conversation = [(m["direction"], m["text"]) for m in await _api(relay, f"{path}/messages")]
    assert (final["status"], final["assignee"], final["resolution_note"]) == (
        "resolved",
        CAT["id"],
        "delivered late",
    )
    assert conversation == [
        ("customer", "my order never arrived"),
        ("note", "they called twice"),
        ("agent", "Thanks Ada, Cat Agent here."),
        ("customer", "it came, thank you"),
    ]
    assert topic()["name"].startswith(header.RESOLVED_MARK)
    in_topic = _texts(emulator, desk.chat_id, desk.bot)
    assert f"{relay_marks.SAVED_REPLY_MARK}\n\nThanks Ada, Cat Agent here." in in_topic
    assert _texts(emulator, ADA["id"], desk.bot) == [
        GREETING,
        "Thanks Ada, Cat Agent here.",
        CLOSING,
    ]
