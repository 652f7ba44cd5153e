"""The knowledge base in a ticket's topic: the articles that may answer a new ticket, `/kb
<words>` on demand, and their "Send to customer" buttons, which answer the customer with the
article as an agent's reply. Also the codec of every knowledge-base button's callback data."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.runtime import Runtime
from tgrelay.support import conversation, kb, kb_store, sends, store
from tgrelay.support.models import Agent, Article, Hit, Ticket
from tgrelay.telegram.outbox.messages import MAX_TEXT_CHARS, CallbackButton, Keyboard

CALLBACK_PREFIX = "kb"
SUGGESTIONS = 3  # articles a topic is offered at once
BUTTON_TITLE_CHARS = 40
SUGGESTED = "📚 Articles that may answer this:"
FOUND = "📚 Articles for “{words}”:"
NOTHING_FOUND = "📚 Nothing found for “{words}”."
SEND_LABEL = "Send to customer: {title}"
SENT = "Sent “{title}” to the customer."
ARTICLE_GONE = "That article was deleted."


class Action(enum.StrEnum):
    """What a knowledge-base button does (its callback data's middle part)."""

    SEND = "send"  # an agent sends the article to the customer
    YES = "yes"  # the customer: the auto-answer answered the question
    NO = "no"  # the customer: they need a person


@dataclass(frozen=True, kw_only=True)
class Press:
    action: Action
    ticket_id: str
    article_id: str | None  # SEND's article


def encode(action: Action, ticket_id: str, article_id: str | None = None) -> str:
    """`kb:<action>:<ticket id>[:<article id>]`: 49 bytes at most, within Telegram's 64."""
    return ":".join(p for p in (CALLBACK_PREFIX, action.value, ticket_id, article_id) if p)


def decode(data: str | None) -> Press | None:
    """A knowledge-base button's press, or None for any other callback data."""
    parts = (data or "").split(":")
    if len(parts) not in (3, 4) or parts[0] != CALLBACK_PREFIX or not parts[2]:
        return None
    try:
        action = Action(parts[1])
    except ValueError:
        return None
    if (action is Action.SEND) != (len(parts) == 4):
        return None
    return Press(
        action=action, ticket_id=parts[2], article_id=parts[3] if len(parts) == 4 else None
    )


def article_text(article: Article) -> str:
    """An article as the customer receives it: its title, then its body, in one message."""
    return f"{article.title}\n\n{article.body}"[:MAX_TEXT_CHARS]


def send_buttons(ticket: Ticket, hits: Sequence[Hit]) -> Keyboard:
    return Keyboard.column(
        *(
            CallbackButton(
                text=SEND_LABEL.format(title=_short(hit.article.title)),
                callback_data=encode(Action.SEND, ticket.id, hit.article.id),
            )
            for hit in hits
        )
    )


async def suggest(conn: AsyncConnection, rt: Runtime, ticket: Ticket, text: str | None) -> None:
    """When a ticket opens: the best articles for the customer's first message, as buttons
    in the topic; nothing when none matches (the topic stays quiet)."""
    if not text:
        return
    hits = await _search(conn, ticket, text)
    if hits:
        await sends.in_topic(conn, rt, ticket, SUGGESTED, keyboard=send_buttons(ticket, hits))


async def search_in_topic(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, words: str, *, reply_to: int
) -> None:
    """`/kb <words>`: the best articles as buttons, or that nothing was found."""
    hits = await _search(conn, ticket, words)
    if hits:
        text = FOUND.format(words=words)
        await sends.in_topic(
            conn, rt, ticket, text, reply_to=reply_to, keyboard=send_buttons(ticket, hits)
        )
    else:
        await sends.in_topic(conn, rt, ticket, NOTHING_FOUND.format(words=words), reply_to=reply_to)


async def send_article(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, agent: Agent, article_id: str
) -> str:
    """A "Send to customer" press: the article goes out as the agent's reply (the relay's
    text path, shown in the topic); the notice that answers the press."""
    article = await kb_store.article(conn, ticket.workspace_id, article_id)
    desk = await store.desk(conn, ticket.desk_id)
    if article is None or desk is None:
        return ARTICLE_GONE
    await conversation.reply(
        conn, rt, desk, ticket, article_text(article), author_id=agent.telegram_user_id
    )
    return SENT.format(title=_short(article.title))


async def _search(conn: AsyncConnection, ticket: Ticket, words: str) -> list[Hit]:
    # The customer's language keeps articles in another out (kb.search_on).
    return await kb.search_on(
        conn,
        ticket.workspace_id,
        words,
        limit=SUGGESTIONS,
        language=ticket.customer.language_code,
    )


def _short(title: str) -> str:
    return title if len(title) <= BUTTON_TITLE_CHARS else title[: BUTTON_TITLE_CHARS - 1] + "…"
