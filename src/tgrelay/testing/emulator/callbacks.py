"""Callback queries: a user presses an inline button, the bot answers the query.

The query can be answered once, within `ANSWER_WINDOW` seconds of the emulator's clock;
after that, or for an id it never issued, answerCallbackQuery answers 400.
"""

from __future__ import annotations

import copy
import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tgrelay.testing.emulator import errors, objects
from tgrelay.testing.emulator.calls import Answer, Call

if TYPE_CHECKING:
    from tgrelay.testing.emulator.state import EmulatorState

# Telegram does not publish how long a query waits for its answer; clients stop waiting
# after about 15 seconds, and later answers get QUERY_TOO_OLD.
ANSWER_WINDOW = timedelta(seconds=15)
MAX_ANSWER_TEXT_LENGTH = 200  # characters (answerCallbackQuery.text)
TOO_OLD = "query is too old and response timeout expired or query ID is invalid"


@dataclass(frozen=True, kw_only=True)
class Reply:
    """How the bot answered a query: what the user saw."""

    text: str | None
    show_alert: bool
    url: str | None
    cache_time: int

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "show_alert": self.show_alert,
            "url": self.url,
            "cache_time": self.cache_time,
        }


@dataclass(kw_only=True)
class _Query:
    bot_id: int
    pressed_at: datetime
    reply: Reply | None = None


class Queries:
    """The callback queries users made, by id, and the bots' answers."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._queries: dict[str, _Query] = {}

    def open(self, bot_id: int, now: datetime) -> str:
        """A new query for the bot; its id, a long number as Telegram's look."""
        query_id = str(self._rng.randrange(10**18, 10**19))
        while query_id in self._queries:
            query_id = str(self._rng.randrange(10**18, 10**19))
        self._queries[query_id] = _Query(bot_id=bot_id, pressed_at=now)
        return query_id

    def answer(self, bot_id: int, query_id: str, reply: Reply, now: datetime) -> None:
        """Record the bot's answer, or refuse: unknown, another bot's, answered or too old."""
        query = self._queries.get(query_id)
        if (
            query is None
            or query.bot_id != bot_id
            or query.reply is not None
            or now - query.pressed_at > ANSWER_WINDOW
        ):
            raise errors.bad_request(TOO_OLD)
        query.reply = reply

    def reply_to(self, query_id: str) -> Reply | None:
        """The answer the bot gave the query (None: not answered)."""
        query = self._queries.get(query_id)
        if query is None:
            raise errors.InvalidPayload(f"no callback query {query_id}")
        return query.reply


def chat_instance(bot_id: int, chat_id: int) -> str:
    """The stable id Telegram gives a chat as one bot sees it in callback queries."""
    digest = hashlib.blake2b(f"{bot_id}:{chat_id}".encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big", signed=True))


def has_button(message: dict[str, Any], data: str) -> bool:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return any(button.get("callback_data") == data for row in rows for button in row)


def press(
    state: EmulatorState,
    bot_id: int,
    user: objects.User,
    chat_id: int,
    message_id: int,
    data: str,
) -> dict[str, Any]:
    """The user presses the button with this callback_data on a bot's message; returns the
    `callback_query` Update as queued."""
    chat = state.chats.get(chat_id)
    if chat is None:
        raise errors.UnknownChat(chat_id)
    # The query carries the message as it now is, without the message it replies to (as
    # Telegram's callback queries show it, even in a forum topic).
    message = state.chats.message(bot_id, chat, message_id)
    if message is None or message["from"]["id"] != bot_id:
        raise errors.InvalidPayload(f"bot {bot_id} has no message {message_id} in chat {chat_id}")
    if not has_button(message, data):
        raise errors.InvalidPayload(
            f"message {message_id} has no button with callback_data {data!r}"
        )
    sender = user.to_json()
    state.chats.note_user(sender)
    query = {
        "id": state.callbacks.open(bot_id, state.clock.now()),
        "from": sender,
        "message": copy.deepcopy(message),
        "chat_instance": chat_instance(bot_id, chat_id),
        "data": data,
    }
    return state.enqueue(bot_id, {"callback_query": query})


async def answer_callback_query(call: Call) -> Answer:
    """answerCallbackQuery: the notification or alert the user sees (or a URL to open)."""
    params, state = call.params, call.emulator.state
    query_id = params.text("callback_query_id")
    if query_id is None:
        raise errors.bad_request("query is empty")
    notice = params.text("text")
    if notice is not None and len(notice) > MAX_ANSWER_TEXT_LENGTH:
        raise errors.bad_request("MESSAGE_TOO_LONG")
    reply = Reply(
        text=notice,
        show_alert=params.flag("show_alert"),
        url=params.text("url"),
        cache_time=params.integer("cache_time", 0, low=0, high=2**31 - 1),
    )
    state.callbacks.answer(call.bot.id, query_id, reply, state.clock.now())
    return Answer(True)
