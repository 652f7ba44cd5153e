"""The conversations domain's share of processing an update (DESIGN: groups → conversations →
support), on the process_update job's connection.

It consumes: a message of a user who has a live conversation in that chat (the chat is the
flow's until it ends), a press of a conversation's button (callback data tagged `cv:`),
`/cancel` while a conversation is live, and a trigger of an enabled flow of the workspace
holding the bot: a command (`/billing`) or `/start <parameter>` in a private chat, or a
button whose callback data is a flow's. Everything else goes on to support.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import tracing
from tgrelay.conversations import inputs, runtime, store
from tgrelay.conversations.models import (
    Answer,
    Button,
    Cancel,
    Contact,
    Facts,
    Location,
    Photo,
    Text,
)
from tgrelay.inbox.models import Handler, Inbound
from tgrelay.runtime import Runtime
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.updates import UpdateKind

log = structlog.get_logger(__name__)

NAME = "conversations"
_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z0-9_]{1,32})(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<rest>.*))?$", re.S
)
CANCEL = "cancel"
CANCELLED = "Stopped. Send the command again whenever you want to start over."
# Answers to presses of a conversation's buttons that moved nothing.
STALE_BUTTON = "This button belongs to an earlier question."
ENDED = "This conversation has ended."


def handler(rt: Runtime) -> Handler:
    """The handler dispatch runs for conversations (between groups and support).

    One query tells which of a batch's participants have a live conversation; only their
    updates, commands and button presses are looked at one by one (with their own reads),
    so the plain messages of everyone else cost that one statement between them.
    """

    async def handle(conn: AsyncConnection, inbound: Inbound) -> bool:
        processed = inbound.processed
        if processed.kind is UpdateKind.CALLBACK_QUERY:
            return await _pressed(rt, conn, inbound, processed.raw["callback_query"])
        if processed.kind is UpdateKind.MESSAGE:
            return await _message(rt, conn, inbound, processed.raw["message"])
        return False

    async def handle_batch(conn: AsyncConnection, batch: Sequence[Inbound]) -> set[int]:
        keys = {inbound.processed.row_id: _participant(inbound) for inbound in batch}
        live = await store.live_participants(conn, {k for k in keys.values() if k is not None})
        touched: set[tuple[int, int, int]] = set()  # may have started or moved in this batch
        consumed = set()
        for inbound in batch:
            key = keys[inbound.processed.row_id]
            if key is None or not (key in live or key in touched or _may_start(inbound)):
                continue
            touched.add(key)
            with tracing.bound(inbound.processed.trace_id):
                if await handle(conn, inbound):
                    consumed.add(inbound.processed.row_id)
        return consumed

    return Handler(name=NAME, handle=handle_batch)


def _participant(inbound: Inbound) -> tuple[int, int, int] | None:
    """(bot, chat, user) of a message or a button press; None for other updates."""
    processed = inbound.processed
    if processed.kind is UpdateKind.MESSAGE:
        message = processed.raw["message"]
    elif processed.kind is UpdateKind.CALLBACK_QUERY:
        query = processed.raw["callback_query"]
        message = {"from": query.get("from"), "chat": (query.get("message") or {}).get("chat")}
    else:
        return None
    sender, chat = message.get("from"), message.get("chat")
    if not isinstance(sender, dict) or not isinstance(chat, dict):
        return None
    if "id" not in sender or "id" not in chat:
        return None
    return inbound.bot.bot_id, int(chat["id"]), int(sender["id"])


def _may_start(inbound: Inbound) -> bool:
    """Whether the update could start a flow (a command, or any press: a trigger's data)."""
    processed = inbound.processed
    if processed.kind is UpdateKind.CALLBACK_QUERY:
        return True
    text = processed.raw["message"].get("text")
    return isinstance(text, str) and text.lstrip().startswith("/")


async def _message(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, message: dict[str, Any]
) -> bool:
    sender = message.get("from")
    chat = message.get("chat") or {}
    if sender is None or sender.get("is_bot") or "id" not in chat:
        return False
    bot_id, chat_id, user_id = inbound.bot.bot_id, int(chat["id"]), int(sender["id"])
    command = _command(message.get("text"), inbound.bot.username)
    found = await _live(conn, rt, inbound, chat_id, user_id)
    if found is not None:
        if command is not None and command[0] == CANCEL:
            await runtime.feed(conn, rt, found, Cancel())
            await outbox.enqueue(
                conn, rt, messages.SendText(bot_id=bot_id, chat_id=chat_id, text=CANCELLED)
            )
            return True
        answer = _answer(message)
        if answer is not None:
            await runtime.feed(conn, rt, found, answer)
        return True  # the chat is the flow's while it runs, whatever was sent
    if chat.get("type") != "private" or command is None:
        return False
    name, rest = command
    if name == "start":
        if not rest:
            return False  # a bare /start: groups or support answer it
        kind, value = "deep_link", rest
    else:
        kind, value = "command", f"/{name}"
    flow_row = await store.flow_for_trigger(conn, inbound.workspace_id, kind, value)
    if flow_row is None:
        return False
    await runtime.start(conn, rt, flow_row, bot_id=bot_id, facts=_facts(sender, chat_id))
    return True


async def _pressed(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, query: dict[str, Any]
) -> bool:
    data = query.get("data")
    sender = query.get("from") or {}
    chat = (query.get("message") or {}).get("chat") or {}
    if not isinstance(data, str) or "id" not in sender or "id" not in chat:
        return False
    bot_id, chat_id, user_id = inbound.bot.bot_id, int(chat["id"]), int(sender["id"])
    if data.startswith(inputs.CALLBACK_TAG):
        found = await _live(conn, rt, inbound, chat_id, user_id)
        notice: str | None = ENDED
        if found is not None:
            button = Button(data=data.removeprefix(inputs.CALLBACK_TAG))
            moved = (await runtime.feed(conn, rt, found, button)).moved
            notice = None if moved else STALE_BUTTON
        await _answer_press(conn, rt, bot_id, query, notice)
        return True
    flow_row = await store.flow_for_trigger(conn, inbound.workspace_id, "callback", data)
    if flow_row is None:
        return False
    if await _live(conn, rt, inbound, chat_id, user_id) is None:
        await runtime.start(conn, rt, flow_row, bot_id=bot_id, facts=_facts(sender, chat_id))
    await _answer_press(conn, rt, bot_id, query, None)
    return True


async def _live(
    conn: AsyncConnection, rt: Runtime, inbound: Inbound, chat_id: int, user_id: int
) -> runtime.Live | None:
    """The participant's live conversation in the workspace holding the bot. One left from a
    workspace that held the bot before is ended (cancelled): it can no longer be answered,
    and the participant may start anew here."""
    found = await runtime.live_of(conn, inbound.bot.bot_id, chat_id, user_id)
    if found is None or found.row.workspace_id == inbound.workspace_id:
        return found
    await runtime.feed(conn, rt, found, Cancel())
    log.info("conversation.left_behind", conversation_id=found.row.id)
    return None


async def _answer_press(
    conn: AsyncConnection, rt: Runtime, bot_id: int, query: dict[str, Any], notice: str | None
) -> None:
    """Stop the button's spinner, with a short notice when the press moved nothing."""
    await outbox.enqueue(
        conn,
        rt,
        messages.AnswerCallback(bot_id=bot_id, callback_query_id=str(query["id"]), text=notice),
    )


def _command(text: Any, bot_username: str | None) -> tuple[str, str] | None:
    """A command addressed to this bot (or to no bot in particular): its name, lowercased,
    and the rest of the text."""
    if not isinstance(text, str):
        return None
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    addressed = match["bot"]
    if addressed is not None and (
        bot_username is None or addressed.casefold() != bot_username.casefold()
    ):
        return None
    return match["name"].lower(), (match["rest"] or "").strip()


def _answer(message: dict[str, Any]) -> Answer | None:
    """What the user sent, as the engine takes it; None for kinds no step asks for."""
    if isinstance(message.get("text"), str):
        return Text(text=message["text"])
    if message.get("photo"):
        largest = max(
            message["photo"], key=lambda size: size.get("width", 0) * size.get("height", 0)
        )
        return Photo(file_id=largest["file_id"], file_unique_id=largest["file_unique_id"])
    location = message.get("location")
    if location is not None:
        return Location(
            latitude=float(location["latitude"]), longitude=float(location["longitude"])
        )
    contact = message.get("contact")
    if contact is not None:
        return Contact(
            phone_number=str(contact["phone_number"]),
            first_name=str(contact.get("first_name", "")),
            last_name=contact.get("last_name"),
            user_id=contact.get("user_id"),
        )
    if isinstance(message.get("caption"), str):
        return Text(text=message["caption"])
    return None


def _facts(sender: dict[str, Any], chat_id: int) -> Facts:
    return Facts(
        user_id=int(sender["id"]),
        chat_id=chat_id,
        first_name=str(sender.get("first_name", "")),
        last_name=sender.get("last_name"),
        username=sender.get("username"),
        language_code=sender.get("language_code"),
    )
