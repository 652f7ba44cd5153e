"""Desks' use cases: a bot and a forum group where its tickets become topics.

A desk is made only once Telegram confirms, live, that the group is a forum and the bot an
administrator allowed to manage topics: the connection row may be stale (topics turned on
or off, rights changed since it was linked). API-facing functions open their own
transactions.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError

from tgrelay import audit, errors
from tgrelay.bots import service as bots
from tgrelay.bots.models import BotStatus
from tgrelay.groups import service as groups
from tgrelay.groups.models import ConnectionStatus
from tgrelay.runtime import Runtime
from tgrelay.support import business_store, store
from tgrelay.support.models import (
    DEFAULT_KB_ANSWER_WAIT_SECONDS,
    DEFAULT_REOPEN_WINDOW_SECONDS,
    Assignment,
    BusinessConnection,
    Desk,
)
from tgrelay.workspaces.models import Principal

# Sent to the customer when a ticket opens / is resolved, unless the desk says otherwise
# (null turns one off).
DEFAULT_GREETING = "Thanks for your message! A member of our team will answer you here soon."
DEFAULT_CLOSING = (
    "Your request has been resolved. If you need anything else, just write to us here."
)
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 4096  # one Telegram message
MAX_REOPEN_WINDOW_SECONDS = 365 * 24 * 3600
MIN_KB_ANSWER_WAIT_SECONDS = 10
MAX_KB_ANSWER_WAIT_SECONDS = 7 * 24 * 3600
# Settings PATCH may change (connection_id is checked with Telegram again).
SETTINGS = (
    "connection_id",
    "name",
    "assignment",
    "reopen_window_seconds",
    "greeting_text",
    "closing_text",
    "kb_auto_answer_threshold",
    "kb_answer_wait_seconds",
)


class GroupNotReady(errors.Conflict):
    """The group cannot host a desk yet."""


class NotAForum(GroupNotReady):
    """The group has no topics: turn on Topics in the group's settings."""


class BotNotAdministrator(GroupNotReady):
    """The bot must be an administrator of the group."""


class MissingRight(GroupNotReady):
    """The bot, an administrator, lacks a right the desk needs."""


class DeskExists(errors.Conflict):
    """The bot already serves a desk."""


async def create_desk(
    rt: Runtime,
    principal: Principal,
    *,
    bot_id: int,
    connection_id: str,
    name: str | None = None,
    assignment: Assignment = Assignment.CLAIM_ON_REPLY,
    reopen_window_seconds: int = DEFAULT_REOPEN_WINDOW_SECONDS,
    greeting_text: str | None = DEFAULT_GREETING,
    closing_text: str | None = DEFAULT_CLOSING,
    kb_auto_answer_threshold: float | None = None,
    kb_answer_wait_seconds: int = DEFAULT_KB_ANSWER_WAIT_SECONDS,
) -> Desk:
    """A new desk, after checking the bot, the connection and, live, the group."""
    workspace_id = principal.workspace_id
    await _check_bot(rt, workspace_id, bot_id)
    title = await _check_group(rt, workspace_id, bot_id, connection_id)
    settings = {
        "name": name if name is not None else (title or f"Desk of bot {bot_id}")[:MAX_NAME_LENGTH],
        "assignment": Assignment(assignment).value,
        "reopen_window_seconds": reopen_window_seconds,
        "greeting_text": greeting_text,
        "closing_text": closing_text,
        "kb_auto_answer_threshold": kb_auto_answer_threshold,
        "kb_answer_wait_seconds": kb_answer_wait_seconds,
    }
    check_settings(settings)
    desk_id = f"dsk_{secrets.token_hex(8)}"
    try:
        await _add_desk(rt, principal, desk_id, bot_id, connection_id, settings)
    except IntegrityError:
        # A create racing ours inserted the bot's desk first (ux_support_desks_live_bot_id).
        async with rt.db.engine.connect() as conn:
            existing = await store.desk_of_bot(conn, bot_id)
        if existing is None:
            raise
        raise DeskExists(_serves(bot_id, existing)) from None
    return await get_desk(rt, workspace_id, desk_id)


async def _add_desk(
    rt: Runtime,
    principal: Principal,
    desk_id: str,
    bot_id: int,
    connection_id: str,
    settings: Mapping[str, Any],
) -> None:
    workspace_id = principal.workspace_id
    now = rt.clock()
    async with rt.db.transaction() as conn:
        # Checked first for the common case; the unique index settles a race.
        existing = await store.desk_of_bot(conn, bot_id)
        if existing is not None:
            raise DeskExists(_serves(bot_id, existing))
        await store.add_desk(
            conn,
            {
                "id": desk_id,
                "workspace_id": workspace_id,
                "bot_id": bot_id,
                "connection_id": connection_id,
                **settings,
                "created_at": now,
                "updated_at": now,
            },
        )
        await audit.record(
            conn,
            action="desk.created",
            actor=principal.actor,
            now=now,
            workspace_id=workspace_id,
            bot_id=bot_id,
            detail={"desk_id": desk_id, "connection_id": connection_id, **settings},
        )


def _serves(bot_id: int, desk: Desk) -> str:
    return f"bot {bot_id} already serves desk {desk.id} ({desk.name})"


async def list_desks(rt: Runtime, workspace_id: str) -> list[Desk]:
    async with rt.db.engine.connect() as conn:
        return await store.list_desks(conn, workspace_id)


async def get_desk(rt: Runtime, workspace_id: str, desk_id: str) -> Desk:
    async with rt.db.engine.connect() as conn:
        found = await store.desk(conn, desk_id, workspace_id=workspace_id)
    if found is None:
        raise errors.NotFound(f"no desk {desk_id}")
    return found


async def business_connections(rt: Runtime, desk: Desk) -> list[BusinessConnection]:
    """The Telegram Business connections of the desk's bot (its workspace's), as last told."""
    async with rt.db.engine.connect() as conn:
        found = await business_store.of_bot(conn, desk.bot_id)
    return [c for c in found if c.workspace_id == desk.workspace_id]


async def update_desk(
    rt: Runtime, principal: Principal, desk_id: str, changes: Mapping[str, Any]
) -> Desk:
    """Change any of SETTINGS; a new connection is checked with Telegram as on create."""
    if unknown := set(changes) - set(SETTINGS):
        raise errors.InvalidInput(f"not a desk setting: {', '.join(sorted(unknown))}")
    current = await get_desk(rt, principal.workspace_id, desk_id)
    values = dict(changes)
    if not values:
        return current  # nothing to change, nothing to audit
    if values.get("assignment") is not None:
        values["assignment"] = Assignment(values["assignment"]).value
    nullable = ("greeting_text", "closing_text", "kb_auto_answer_threshold")
    if nulls := [k for k in SETTINGS if k not in nullable and k in values and values[k] is None]:
        raise errors.InvalidInput(
            f"{', '.join(nulls)} cannot be null; only the texts and the threshold can"
        )
    check_settings(values)
    new_connection = values.get("connection_id")
    if new_connection is not None and new_connection != current.connection_id:
        await _check_group(rt, principal.workspace_id, current.bot_id, new_connection)
    now = rt.clock()
    async with rt.db.transaction() as conn:
        if await store.desk(conn, desk_id, workspace_id=principal.workspace_id) is None:
            raise errors.NotFound(f"no desk {desk_id}")  # deleted meanwhile
        await store.change_desk(conn, desk_id, **values, updated_at=now)
        await audit.record(
            conn,
            action="desk.updated",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            bot_id=current.bot_id,
            detail={"desk_id": desk_id, **values},
        )
    return await get_desk(rt, principal.workspace_id, desk_id)


async def delete_desk(rt: Runtime, principal: Principal, desk_id: str) -> None:
    """Soft delete: the bot's private messages stop opening tickets; tickets keep history."""
    now = rt.clock()
    async with rt.db.transaction() as conn:
        found = await store.desk(conn, desk_id, workspace_id=principal.workspace_id)
        if found is None:
            raise errors.NotFound(f"no desk {desk_id}")
        await store.change_desk(conn, desk_id, deleted_at=now, updated_at=now)
        await audit.record(
            conn,
            action="desk.deleted",
            actor=principal.actor,
            now=now,
            workspace_id=principal.workspace_id,
            bot_id=found.bot_id,
            detail={"desk_id": desk_id},
        )


def check_settings(values: Mapping[str, Any]) -> None:
    """Raise InvalidInput for a setting out of bounds (the API's schema says the same; the
    UI's forms and other callers come through here)."""
    name = values.get("name")
    if name is not None and not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise errors.InvalidInput(f"name must be 1 to {MAX_NAME_LENGTH} characters")
    window = values.get("reopen_window_seconds")
    if window is not None and not 0 <= window <= MAX_REOPEN_WINDOW_SECONDS:
        raise errors.InvalidInput(
            f"reopen_window_seconds must be 0 to {MAX_REOPEN_WINDOW_SECONDS} (365 days)"
        )
    threshold = values.get("kb_auto_answer_threshold")
    if threshold is not None and not (0 <= threshold < float("inf")):
        raise errors.InvalidInput("kb_auto_answer_threshold must be 0 or more, or null for off")
    wait = values.get("kb_answer_wait_seconds")
    if wait is not None and not MIN_KB_ANSWER_WAIT_SECONDS <= wait <= MAX_KB_ANSWER_WAIT_SECONDS:
        raise errors.InvalidInput(
            f"kb_answer_wait_seconds must be {MIN_KB_ANSWER_WAIT_SECONDS} to "
            f"{MAX_KB_ANSWER_WAIT_SECONDS} (7 days)"
        )
    for field in ("greeting_text", "closing_text"):
        text = values.get(field)
        if text is not None and not 1 <= len(text) <= MAX_TEXT_LENGTH:
            raise errors.InvalidInput(
                f"{field} must be 1 to {MAX_TEXT_LENGTH} characters, or null for none"
            )


async def _check_bot(rt: Runtime, workspace_id: str, bot_id: int) -> None:
    bot = await bots.get_bot(rt, workspace_id, bot_id)  # NotFound for another workspace's
    if bot.status in (BotStatus.DISCONNECTED, BotStatus.TOKEN_REVOKED):
        raise errors.Conflict(f"bot {bot_id} is {bot.status.value}: reconnect it first")


async def _check_group(
    rt: Runtime, workspace_id: str, bot_id: int, connection_id: str
) -> str | None:
    """Check the connection, then ask Telegram about the group; the group's title."""
    connection = await groups.get_connection(rt, workspace_id, connection_id)
    if connection.bot_id != bot_id:
        raise errors.InvalidInput(
            f"connection {connection_id} is bot {connection.bot_id}'s; the desk's bot is {bot_id}"
        )
    if connection.status is not ConnectionStatus.ACTIVE:
        raise errors.Conflict(
            f"connection {connection_id} is {connection.status.value}"
            + (f": {connection.status_reason}" if connection.status_reason else "")
        )
    client = rt.telegram.for_token(await bots.token_of(rt, bot_id))
    chat_id = connection.chat_id
    try:
        chat = await client.get_chat(chat_id)
        member = await client.get_chat_member(chat_id, bot_id)
    except (errors.TelegramBadRequest, errors.TelegramForbidden) as exc:
        raise GroupNotReady(f"Telegram refused to show group {chat_id} to the bot: {exc}") from exc
    if chat.type != "supergroup" or not chat.is_forum:
        raise NotAForum(
            f"group {chat.title or chat_id} has no topics: turn on Topics in its settings"
        )
    if member.status not in ("administrator", "creator"):
        raise BotNotAdministrator(
            f"the bot is {member.status} in {chat.title or chat_id}: make it an administrator"
        )
    if not member.can_manage_topics:
        raise MissingRight(
            f'the bot lacks the administrator right "Manage topics" in {chat.title or chat_id}'
        )
    return chat.title
