"""The knowledge base in the support handler (tests/dispatching.py): suggestions when a
ticket opens, /kb, "Send to customer", and auto-answers' Yes / No / no answer."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.dispatching import Dispatching, Produced
from tests.support.desks import (
    ADA,
    BOB,
    DeskSetup,
    latest,
    make_desk,
    requests,
    sends,
    topic_made,
)
from tgrelay import app, errors
from tgrelay.db import tables
from tgrelay.queue import store as job_store
from tgrelay.queue.worker import Transactional
from tgrelay.support import kb, kb_answers, kb_store, kb_topic, store, ticket_store
from tgrelay.support.kb_topic import Action
from tgrelay.support.models import AutoAnswerOutcome, Direction, TicketStatus
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.outbox.messages import CallbackButton, Keyboard
from tgrelay.testing.clock import Clock

PASSWORD = "I forgot my password and cannot log in"
RESET = {"title": "Reset your password", "body": "Open Settings › Security › Reset password."}
ARTICLES: list[dict[str, Any]] = [
    {**RESET, "auto_answer": True},
    {"title": "Billing", "body": "Invoices are emailed monthly."},
    {"title": "Delivery times", "body": "Orders ship within two days."},
    {"title": "Login problems", "body": "Clear cookies; if your password fails, reset it."},
]
WAIT = 300
UPDATE_IDS = itertools.count(880001)


@pytest.fixture
async def desk(relay: Dispatching) -> DeskSetup:
    setup = await make_desk(relay)
    ids = [await _article(relay, values) for values in ARTICLES]
    assert len(ids) == len(ARTICLES)
    return setup


async def _article(relay: Dispatching, values: dict[str, Any]) -> str:
    return (await kb.create_article(relay.rt, relay.principal, **values)).id


async def _auto_answers(relay: Dispatching, *, above: float) -> None:
    """Turn the desk's auto-answers on, with the threshold `above` the reset article's score."""
    async with relay.rt.db.transaction() as conn:
        [hit] = await kb.search_on(
            conn, relay.principal.workspace_id, PASSWORD, limit=1, auto_answer_only=True
        )
        await store.change_desk(
            conn,
            "dsk_help",
            kb_auto_answer_threshold=hit.score + above,
            kb_answer_wait_seconds=WAIT,
        )


async def _opens(relay: Dispatching, desk: DeskSetup, text: str) -> tuple[str, Produced]:
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, text)
    produced = await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
    assert found is not None
    return found.id, produced


async def _press(
    relay: Dispatching, desk: DeskSetup, data: str, *, who: dict[str, Any], chat_id: int
) -> Produced:
    update = {
        "update_id": next(UPDATE_IDS),
        "callback_query": {
            "id": "q1",
            "from": who,
            "chat_instance": "1",
            "data": data,
            "message": {"message_id": 77, "date": 0, "chat": {"id": chat_id, "type": "private"}},
        },
    }
    return await relay.process(desk.bot.id, [update])


def _texts(produced: Produced) -> list[tuple[str, int, str, Keyboard | None]]:
    found: list[tuple[str, int, str, Keyboard | None]] = []
    for r in requests(produced):
        if isinstance(r, messages.SendText):
            found.append((type(r).__name__, r.chat_id, r.text, r.keyboard))
    return found


def _send_buttons(ticket_id: str, *titles_ids: tuple[str, str]) -> Keyboard:
    return Keyboard.column(
        *(
            CallbackButton(
                text=f"Send to customer: {title}",
                callback_data=kb_topic.encode(Action.SEND, ticket_id, article_id),
            )
            for title, article_id in titles_ids
        )
    )


async def _ids(relay: Dispatching) -> dict[str, str]:
    async with relay.rt.db.engine.connect() as conn:
        articles = await kb_store.list_articles(conn, relay.principal.workspace_id)
    return {a.title: a.id for a in articles}


async def test_a_new_ticket_gets_suggestions_as_buttons(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """The best articles for the first message go to the topic as "Send to customer"
    buttons, after the greeting; a message nothing matches adds nothing."""
    ticket_id, produced = await _opens(relay, desk, PASSWORD)
    ids = await _ids(relay)
    await topic_made(relay, desk, ticket_id)
    await relay.process(desk.bot.id, [])
    assert _texts(produced)[-1] == (
        "SendText",
        desk.chat_id,
        kb_topic.SUGGESTED,
        _send_buttons(
            ticket_id,
            ("Reset your password", ids["Reset your password"]),
            ("Login problems", ids["Login problems"]),
        ),
    )
    async with relay.rt.db.transaction() as conn:
        await ticket_store.change_ticket(conn, ticket_id, status="closed")
    _, quiet = await _opens(relay, desk, "zebra giraffe")
    assert [s[0] for s in sends(quiet)] == [
        "support.topic",
        "support.header",
        "support.relay",
        None,  # the greeting
    ]


async def test_send_to_customer_replies_with_the_article(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """An agent's press sends the article as their reply (to the customer and the topic),
    makes the first response, and answers the press."""
    ticket_id, _ = await _opens(relay, desk, PASSWORD)
    await topic_made(relay, desk, ticket_id)
    reset_id = (await _ids(relay))["Reset your password"]
    text = "Reset your password\n\nOpen Settings › Security › Reset password."

    produced = await _press(
        relay,
        desk,
        kb_topic.encode(Action.SEND, ticket_id, reset_id),
        who=BOB,
        chat_id=desk.chat_id,
    )

    ticket = await latest(relay, ticket_id)
    async with relay.rt.db.engine.connect() as conn:
        last = (await ticket_store.list_messages(conn, ticket_id))[-1]
    answers = [r for r in requests(produced) if isinstance(r, messages.AnswerCallback)]
    assert [(t[1], t[2]) for t in _texts(produced)][:2] == [
        (ADA["id"], text),
        (desk.chat_id, text),
    ]
    assert (last.direction, last.author_id, last.text) == (Direction.AGENT, BOB["id"], text)
    assert (ticket.status, ticket.first_response_at is not None) == (TicketStatus.OPEN, True)
    assert [a.text for a in answers] == ["Sent “Reset your password” to the customer."]


async def test_kb_command_searches_on_demand(relay: Dispatching, desk: DeskSetup) -> None:
    """/kb <words> answers in the topic with buttons, or says nothing was found."""
    ticket_id, _ = await _opens(relay, desk, "hello there")
    thread_id = await topic_made(relay, desk, ticket_id)
    ids = await _ids(relay)
    emulator = relay.emulator.emulator

    emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "/kb invoices", message_thread_id=thread_id
    )
    found = await relay.process_pending(desk.bot.id)
    emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "/kb zebra", message_thread_id=thread_id
    )
    nothing = await relay.process_pending(desk.bot.id)

    assert [(t[2], t[3]) for t in _texts(found)] == [
        ("📚 Articles for “invoices”:", _send_buttons(ticket_id, ("Billing", ids["Billing"])))
    ]
    assert [(t[2], t[3]) for t in _texts(nothing)] == [("📚 Nothing found for “zebra”.", None)]


async def test_auto_answer_then_yes_resolves_as_deflected(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """Above the threshold the article answers at once with the question; Yes resolves the
    ticket as deflected, counts it, answers the press and takes the buttons off."""
    await _auto_answers(relay, above=-0.001)
    ticket_id, produced = await _opens(relay, desk, PASSWORD)
    reset_id = (await _ids(relay))["Reset your password"]
    async with relay.rt.db.engine.connect() as conn:
        [timer] = (
            await conn.execute(
                select(tables.jobs.c.run_at).where(tables.jobs.c.kind == kb_answers.ANSWER_WAIT)
            )
        ).all()
    question = Keyboard(
        rows=(
            (
                CallbackButton(text="Yes", callback_data=f"kb:yes:{ticket_id}"),
                CallbackButton(text="No, I need a person", callback_data=f"kb:no:{ticket_id}"),
            ),
        )
    )
    to_ada = [(t[2], t[3]) for t in _texts(produced) if t[1] == ADA["id"]]
    assert to_ada == [
        ("Hi! We got your message.", None),
        ("Reset your password\n\nOpen Settings › Security › Reset password.", None),
        ("Did this answer your question?", question),
    ]
    assert _texts(produced)[-1][2].startswith(
        "🤖 Answered automatically with “Reset your password”"
    )
    assert timer.run_at == clock() + timedelta(seconds=WAIT)

    clock.advance(30)
    pressed = await _press(relay, desk, f"kb:yes:{ticket_id}", who=ADA, chat_id=ADA["id"])

    ticket = await latest(relay, ticket_id)
    answer = await kb_answers.of_ticket(relay.rt, relay.principal.workspace_id, ticket_id)
    sent = requests(pressed)
    assert (ticket.status, ticket.resolution_note) == (TicketStatus.RESOLVED, "deflected")
    assert (answer.article_id, answer.outcome, answer.settled_at) == (
        reset_id,
        AutoAnswerOutcome.DEFLECTED,
        clock(),
    )
    assert relay.rt.metrics.support_deflections._value.get() == 1
    assert (
        messages.AnswerCallback(bot_id=desk.bot.id, callback_query_id="q1", text="Glad it helped!")
        in sent
    )
    assert messages.EditKeyboard(bot_id=desk.bot.id, chat_id=ADA["id"], message_id=77) in sent

    again = await _press(relay, desk, f"kb:no:{ticket_id}", who=ADA, chat_id=ADA["id"])
    assert [r.text for r in requests(again) if isinstance(r, messages.AnswerCallback)] == [
        kb_answers.SETTLED
    ]


async def test_auto_answer_then_no_goes_to_agents(relay: Dispatching, desk: DeskSetup) -> None:
    """No keeps the ticket new for the agents and shows them the article; only the ticket's
    customer's press counts."""
    await _auto_answers(relay, above=-0.001)
    ticket_id, _ = await _opens(relay, desk, PASSWORD)

    stranger = await _press(relay, desk, f"kb:no:{ticket_id}", who=BOB, chat_id=BOB["id"])
    pressed = await _press(relay, desk, f"kb:no:{ticket_id}", who=ADA, chat_id=ADA["id"])

    ticket = await latest(relay, ticket_id)
    answer = await kb_answers.of_ticket(relay.rt, relay.principal.workspace_id, ticket_id)
    assert requests(stranger) == []
    assert (ticket.status, answer.outcome) == (TicketStatus.NEW, AutoAnswerOutcome.DECLINED)
    assert [(t[1], t[2]) for t in _texts(pressed)] == [
        (
            desk.chat_id,
            "🙋 The customer needs a person. Over to you. They were sent:\n\n"
            "Reset your password\n\nOpen Settings › Security › Reset password.",
        )
    ]
    assert [r.text for r in requests(pressed) if isinstance(r, messages.AnswerCallback)] == [
        "An agent will answer you here."
    ]
    assert relay.rt.metrics.support_deflections._value.get() == 0


async def test_no_answer_within_the_wait_goes_to_agents(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """The wait's timer, run when due, hands a still-unanswered ticket to the agents once."""
    await _auto_answers(relay, above=-0.001)
    ticket_id, _ = await _opens(relay, desk, PASSWORD)
    registration = app.job_registry(relay.rt).lookup(kb_answers.ANSWER_WAIT)
    assert isinstance(registration, Transactional)
    async with relay.rt.db.engine.connect() as conn:
        job_id = await conn.scalar(
            select(tables.jobs.c.id).where(tables.jobs.c.kind == kb_answers.ANSWER_WAIT)
        )
        assert job_id is not None
        job = await job_store.get(conn, int(job_id))
    assert job is not None

    clock.advance(WAIT)
    for _ in range(2):
        async with relay.rt.db.transaction() as conn:
            await registration.handler(conn, job)
    await relay.process(desk.bot.id, [])

    ticket = await latest(relay, ticket_id)
    answer = await kb_answers.of_ticket(relay.rt, relay.principal.workspace_id, ticket_id)
    async with relay.rt.db.engine.connect() as conn:
        notices = (
            await conn.execute(
                select(tables.jobs.c.payload).where(tables.jobs.c.payload.like("%did not say%"))
            )
        ).all()
    assert (ticket.status, answer.outcome, answer.settled_at) == (
        TicketStatus.NEW,
        AutoAnswerOutcome.TIMED_OUT,
        clock(),
    )
    assert len(notices) == 1


async def test_no_auto_answer_at_the_threshold(relay: Dispatching, desk: DeskSetup) -> None:
    """A best score not above the threshold sends no auto-answer, and the API says so."""
    await _auto_answers(relay, above=0.0)
    ticket_id, produced = await _opens(relay, desk, PASSWORD)
    async with relay.rt.db.engine.connect() as conn:
        row = await kb_store.auto_answer(conn, ticket_id)
    workspace_id = relay.principal.workspace_id
    with pytest.raises(errors.NotFound) as none:
        await kb_answers.of_ticket(relay.rt, workspace_id, ticket_id)
    with pytest.raises(errors.NotFound) as unknown:
        await kb_answers.of_ticket(relay.rt, workspace_id, "tkt_nope")
    assert row is None
    assert [t[2] for t in _texts(produced) if t[1] == ADA["id"]] == ["Hi! We got your message."]
    assert (str(none.value), str(unknown.value)) == (
        f"ticket {ticket_id} was not answered automatically",
        "no ticket tkt_nope",
    )


async def test_no_auto_answer_when_off(relay: Dispatching, desk: DeskSetup) -> None:
    """With no threshold (the default) a matching auto_answer article is only suggested."""
    ticket_id, produced = await _opens(relay, desk, PASSWORD)
    async with relay.rt.db.engine.connect() as conn:
        row = await kb_store.auto_answer(conn, ticket_id)
        jobs = await conn.scalar(
            select(tables.jobs.c.id).where(tables.jobs.c.kind == kb_answers.ANSWER_WAIT)
        )
    assert (row, jobs) == (None, None)
    assert [t[2] for t in _texts(produced) if t[1] == ADA["id"]] == ["Hi! We got your message."]
