"""Auto-answers: an auto_answer article that matches a new ticket's first message above the
desk's threshold answers the customer at once and asks whether it helped. Yes resolves the
ticket as deflected; No, or no answer within the desk's wait, leaves it to the agents with
the article shown in the topic. Each inside the caller's transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.queue import store as job_store
from tgrelay.queue import worker
from tgrelay.queue.models import Job, NewJob
from tgrelay.runtime import Runtime
from tgrelay.support import kb, kb_store, kb_topic, lifecycle, rules, sends, ticket_store
from tgrelay.support.kb_topic import Action, Press
from tgrelay.support.models import (
    AutoAnswer,
    AutoAnswerOutcome,
    Desk,
    Ticket,
    TicketStatus,
)
from tgrelay.support.rules import Refused
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.outbox.messages import CallbackButton, Keyboard

ANSWER_WAIT = "support_kb_answer_wait"
DEFLECTED = "deflected"  # the resolution note of a ticket the customer's Yes resolved
QUESTION = "Did this answer your question?"
YES_LABEL = "Yes"
NO_LABEL = "No, I need a person"
THANKS = "Glad it helped!"
PERSON = "An agent will answer you here."
SETTLED = "This question went to our team already."
AUTO_SENT = (
    "🤖 Answered automatically with “{title}” (score {score:.2f}); waiting up to {minutes} "
    "min for the customer to say whether it helped."
)
SAID_YES = "✅ The customer says “{title}” answered their question: resolved as deflected."
GOES_TO_AGENTS = "🙋 {why} Over to you. They were sent:\n\n{article}"
SAID_NO = "The customer needs a person."
NO_ANSWER = "The customer did not say whether the article helped within {minutes} min."


async def opened(
    conn: AsyncConnection, rt: Runtime, desk: Desk, ticket: Ticket, text: str | None
) -> None:
    """A ticket just opened with `text`: the topic's suggestions, then the auto-answer
    when an auto_answer article scores above the desk's threshold."""
    await kb_topic.suggest(conn, rt, ticket, text)
    threshold = desk.kb_auto_answer_threshold
    if threshold is None or not text:
        return
    language = ticket.customer.language_code
    hits = await kb.search_on(
        conn, ticket.workspace_id, text, limit=1, language=language, auto_answer_only=True
    )
    if not hits or hits[0].score <= threshold:
        return
    hit, now = hits[0], rt.clock()
    await kb_store.add_auto_answer(
        conn,
        AutoAnswer(
            ticket_id=ticket.id,
            article_id=hit.article.id,
            title=hit.article.title,
            score=hit.score,
            outcome=AutoAnswerOutcome.WAITING,
            asked_at=now,
            settled_at=None,
        ),
    )
    await sends.to_customer(conn, rt, ticket, kb_topic.article_text(hit.article))
    await sends.to_customer(conn, rt, ticket, QUESTION, keyboard=_question(ticket))
    minutes = _minutes(desk.kb_answer_wait_seconds)
    await sends.in_topic(
        conn,
        rt,
        ticket,
        AUTO_SENT.format(title=hit.article.title, score=hit.score, minutes=minutes),
    )
    await job_store.enqueue(
        conn,
        [
            NewJob(
                kind=ANSWER_WAIT,
                payload={"ticket_id": ticket.id, "wait_seconds": desk.kb_answer_wait_seconds},
                run_at=now + timedelta(seconds=desk.kb_answer_wait_seconds),
            )
        ],
        now=now,
        default_max_attempts=rt.settings.job_max_attempts,
    )
    rt.metrics.support_auto_answers.labels(outcome=AutoAnswerOutcome.WAITING.value).inc()


async def customer_said(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, press: Press, query: dict[str, Any]
) -> None:
    """The customer pressed Yes or No under the question (`ticket` read for update); the
    press is answered, and the buttons taken off the question."""
    answer = await kb_store.auto_answer(conn, ticket.id)
    notice = SETTLED
    if answer is not None and answer.outcome is AutoAnswerOutcome.WAITING:
        if press.action is Action.YES:
            notice = await _deflected(conn, rt, ticket, answer)
        else:
            await _to_agents(conn, rt, ticket, answer, AutoAnswerOutcome.DECLINED, SAID_NO)
            notice = PERSON
    await outbox.enqueue(
        conn,
        rt,
        messages.AnswerCallback(bot_id=ticket.bot_id, callback_query_id=query["id"], text=notice),
    )
    question = query.get("message")
    if question is not None:
        await outbox.enqueue(
            conn,
            rt,
            messages.EditKeyboard(
                bot_id=ticket.bot_id,
                chat_id=ticket.customer_chat_id,
                message_id=int(question["message_id"]),
            ),
            ordering_key=sends.ticket_key(ticket.id),
        )


async def wait_ended(
    conn: AsyncConnection, rt: Runtime, ticket_id: str, *, wait_seconds: int
) -> None:
    """The desk's wait is over: a question still unanswered goes to the agents."""
    ticket = await ticket_store.ticket(conn, ticket_id, for_update=True)
    answer = await kb_store.auto_answer(conn, ticket_id)
    if ticket is None or answer is None or answer.outcome is not AutoAnswerOutcome.WAITING:
        return
    why = NO_ANSWER.format(minutes=_minutes(wait_seconds))
    await _to_agents(conn, rt, ticket, answer, AutoAnswerOutcome.TIMED_OUT, why)


async def of_ticket(rt: Runtime, workspace_id: str, ticket_id: str) -> AutoAnswer:
    """What the auto-answer did for a ticket (the API's view); NotFound when it had none."""
    async with rt.db.engine.connect() as conn:
        ticket = await ticket_store.ticket(conn, ticket_id, workspace_id=workspace_id)
        answer = None if ticket is None else await kb_store.auto_answer(conn, ticket_id)
    if ticket is None:
        raise errors.NotFound(f"no ticket {ticket_id}")
    if answer is None:
        raise errors.NotFound(f"ticket {ticket_id} was not answered automatically")
    return answer


def register(registry: worker.Registry, rt: Runtime) -> None:
    async def run(conn: AsyncConnection, job: Job) -> None:
        await wait_ended(
            conn,
            rt,
            str(job.payload["ticket_id"]),
            wait_seconds=int(job.payload["wait_seconds"]),
        )

    registry.register(ANSWER_WAIT, run)


async def _deflected(conn: AsyncConnection, rt: Runtime, ticket: Ticket, answer: AutoAnswer) -> str:
    if rules.check(ticket.status, TicketStatus.RESOLVED) is not None:
        return SETTLED  # closed meanwhile: nothing left to resolve
    # Said before the resolve closes the topic, so that it reads in order there.
    await sends.in_topic(conn, rt, ticket, SAID_YES.format(title=answer.title))
    changed = await lifecycle.change_status(
        conn, rt, ticket, TicketStatus.RESOLVED, changed_by=lifecycle.CUSTOMER, note=DEFLECTED
    )
    assert not isinstance(changed, Refused)  # checked above, on the row held for update
    await kb_store.settle(conn, ticket.id, AutoAnswerOutcome.DEFLECTED, rt.clock())
    rt.metrics.support_deflections.inc()
    rt.metrics.support_auto_answers.labels(outcome=AutoAnswerOutcome.DEFLECTED.value).inc()
    return THANKS


async def _to_agents(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    answer: AutoAnswer,
    outcome: AutoAnswerOutcome,
    why: str,
) -> None:
    """The ticket stays with the agents as it is (new, or open if one answered meanwhile),
    with the article the customer got shown in its topic."""
    await kb_store.settle(conn, ticket.id, outcome, rt.clock())
    article = await kb_store.article(conn, ticket.workspace_id, answer.article_id)
    sent = kb_topic.article_text(article) if article is not None else answer.title
    await sends.in_topic(conn, rt, ticket, GOES_TO_AGENTS.format(why=why, article=sent))
    rt.metrics.support_auto_answers.labels(outcome=outcome.value).inc()


def _question(ticket: Ticket) -> Keyboard:
    return Keyboard(
        rows=(
            (
                CallbackButton(
                    text=YES_LABEL, callback_data=kb_topic.encode(Action.YES, ticket.id)
                ),
                CallbackButton(text=NO_LABEL, callback_data=kb_topic.encode(Action.NO, ticket.id)),
            ),
        )
    )


def _minutes(wait_seconds: int) -> int:
    return max(1, round(wait_seconds / 60))
