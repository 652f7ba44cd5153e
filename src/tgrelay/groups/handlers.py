"""The groups domain's share of processing an update (DESIGN: groups → conversations → …).

Runs inside the process_update job's transaction, on its connection: what it writes
(session changes, connections, queued replies, audit rows) commits once, with the job.
It consumes what it acted on for tgrelay itself: a connect link's `/start <token>` (and a
bare `/start` it answered), the bot's own additions that connect a group and removals
that mark one, and a group's migration; anything else goes on to the next handler.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.groups import delivery, rules, service, store
from tgrelay.groups.models import ConnectionStatus, ConnectSession, SessionState
from tgrelay.inbox.models import Handler, Inbound
from tgrelay.runtime import Runtime
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.updates import UpdateKind

if TYPE_CHECKING:
    from aiogram.types import Chat, ChatMemberUpdated, Message, User

log = structlog.get_logger(__name__)

GROUP_TYPES = frozenset({"group", "supergroup"})

UNKNOWN_LINK_REPLY = (
    "This link is not valid. Open a new “Connect Telegram group” link in tgrelay and try again."
)
USED_LINK_REPLY = "This link was already used. Start again from tgrelay to connect another group."
EXPIRED_LINK_REPLY = "This link has expired. Open a new “Connect Telegram group” link in tgrelay."
VERIFIED_REPLY = (
    "✅ You're verified, {name}.\n"
    "Now add me to the group that should receive alerts: tap the button below and pick it."
)
CONNECTED_REPLY = "✅ This group is connected to tgrelay. Alerts will arrive here."
# A bare /start is what everyone sends first; the linking link always carries a token.
BARE_START_REPLY = (
    "👋 This bot posts your team's alerts in Telegram groups, through tgrelay.\n"
    "To link a group, open “Connect a group” in your team's tgrelay and scan the QR code "
    "or tap the link it shows: it brings you back here to confirm."
)


NAME = "groups"  # what an inbound event's `consumed_by` says of the updates it consumed


def handler(rt: Runtime) -> Handler:
    """The handler dispatch runs for the groups domain."""

    async def handle(conn: AsyncConnection, inbound: Inbound) -> bool:
        processed = inbound.processed
        # The typed parse is costly: only the updates this domain acts on get it.
        if processed.kind is UpdateKind.MY_CHAT_MEMBER:
            change = processed.update.my_chat_member
            return change is not None and await _membership_changed(rt, conn, inbound, change)
        if processed.kind is UpdateKind.MESSAGE and rules.concerns_groups(processed.raw["message"]):
            message = processed.update.message
            return message is not None and await _message(rt, conn, inbound, message)
        return False

    return Handler.each(NAME, handle)


async def _message(rt: Runtime, conn: AsyncConnection, inbound: Inbound, message: Message) -> bool:
    """Act on a message that concerns groups; True when it was tgrelay's (consumed)."""
    bot_id = inbound.bot.bot_id
    chat, sender = message.chat, message.from_user
    if message.migrate_to_chat_id is not None:
        await delivery.migrate_chat(
            conn, rt, bot_id=bot_id, old_chat_id=chat.id, new_chat_id=message.migrate_to_chat_id
        )
        return True
    if message.migrate_from_chat_id is not None:
        await delivery.migrate_chat(
            conn, rt, bot_id=bot_id, old_chat_id=message.migrate_from_chat_id, new_chat_id=chat.id
        )
        return True
    if sender is None:
        return False
    added = _bot_in(message.new_chat_members or _legacy_new_members(message), bot_id)
    if added and chat.type in GROUP_TYPES:
        return await _bot_added(rt, conn, bot_id, chat, actor=sender, at=message.date)
    left = message.left_chat_member
    if left is not None and left.id == bot_id:
        return await _bot_gone(
            rt, conn, bot_id, chat.id, reason="the bot was removed from the group"
        )
    start = rules.parse_start(message.text)
    if start is None:
        return False
    if start.payload is None:
        if chat.type == "private" and rt.settings.reply_to_bare_start:
            if await _start_taken(rt, conn, bot_id):
                return False  # another domain's handler answers it
            await _reply(rt, conn, bot_id, chat.id, BARE_START_REPLY)
            return True  # answered: the app must not answer it a second time
        return False
    if not rules.is_token(start.payload):
        return False
    if chat.type == "private":
        await _private_start(rt, conn, inbound, chat, sender, start.payload)
        return True
    if chat.type in GROUP_TYPES:
        await _group_start(rt, conn, inbound, chat, sender, start.payload)
        return True
    return False


async def _membership_changed(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, change: ChatMemberUpdated
) -> bool:
    old, new = change.old_chat_member, change.new_chat_member
    new_is_member = getattr(new, "is_member", None)
    bot_id = inbound.bot.bot_id
    if change.chat.type not in GROUP_TYPES:
        return False
    if rules.bot_joined(old.status, new.status, new_is_member=new_is_member):
        return await _bot_added(
            rt, conn, bot_id, change.chat, actor=change.from_user, at=change.date
        )
    if rules.bot_left(old.status, new.status, new_is_member=new_is_member):
        how = "kicked" if new.status == "kicked" else "left"
        return await _bot_gone(
            rt, conn, bot_id, change.chat.id, reason=f"the bot was {how} from the group"
        )
    return False


# --- phase 1 -------------------------------------------------------------------------------


async def _private_start(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, chat: Chat, user: User, token: str
) -> None:
    """`/start <token>` in a private chat proves who the user is; the token is spent."""
    now = rt.clock()
    bot_id = inbound.bot.bot_id
    session = await _session(conn, inbound, token)
    refusal = _refusal(session, now)
    if refusal is not None or session is None:
        await _reply(rt, conn, bot_id, chat.id, refusal or UNKNOWN_LINK_REPLY)
        await _audit_refusal(conn, bot_id, session, user, refusal or UNKNOWN_LINK_REPLY, now)
        return
    await _verify(conn, session, user, now=now, ttl=rt.settings.connect_session_ttl_seconds)
    await outbox.enqueue(
        conn,
        rt,
        messages.SendText(
            bot_id=bot_id,
            chat_id=chat.id,
            text=VERIFIED_REPLY.format(name=user.first_name),
            # No token in this link: phase 2 trusts who adds the bot, not what the link says.
            keyboard=messages.Keyboard.column(
                messages.UrlButton(
                    text="➕ Add to a group", url=_startgroup_link(inbound.bot.username)
                )
            ),
        ),
    )


async def _session(conn: AsyncConnection, inbound: Inbound, token: str) -> ConnectSession | None:
    """The session a token names, if it is of the workspace holding the bot (a released bot's
    sessions are cancelled with it; this keeps it so should one outlive that)."""
    session = await store.session_by_token(conn, inbound.bot.bot_id, token)
    if session is None or session.workspace_id != inbound.workspace_id:
        return None
    return session


def _refusal(session: ConnectSession | None, now: datetime) -> str | None:
    if session is None:
        return UNKNOWN_LINK_REPLY
    state = rules.effective_state(session.state, session.expires_at, now)
    if state is SessionState.EXPIRED:
        return EXPIRED_LINK_REPLY
    if state is not SessionState.WAITING_PRIVATE:
        return USED_LINK_REPLY
    return None


async def _verify(
    conn: AsyncConnection, session: ConnectSession, user: User, *, now: datetime, ttl: float
) -> None:
    await store.change_session(
        conn,
        session.id,
        token=None,
        state=SessionState.WAITING_GROUP.value,
        user_id=user.id,
        user_first_name=user.first_name,
        user_username=user.username,
        verified_at=now,
        group_started_at=now,
        expires_at=now + timedelta(seconds=ttl),
    )
    await audit.record(
        conn,
        action="connect_session.verified",
        actor=audit.TELEGRAM,
        now=now,
        workspace_id=session.workspace_id,
        bot_id=session.bot_id,
        detail={"session_id": session.id, "telegram_user_id": user.id},
    )


def _startgroup_link(bot_username: str) -> str:
    return f"https://t.me/{bot_username}?startgroup=connect"


# --- phase 2 -------------------------------------------------------------------------------


async def _group_start(
    rt: Runtime,
    conn: AsyncConnection,
    inbound: Inbound,
    chat: Chat,
    user: User,
    token: str,
) -> None:
    """One tap: a startgroup link with the token added the bot, and Telegram sent
    `/start@bot <token>` in the group from the user who added it: both phases at once."""
    now = rt.clock()
    session = await _session(conn, inbound, token)
    if _refusal(session, now) is not None or session is None:
        await _audit_refusal(
            conn, inbound.bot.bot_id, session, user, "unusable token in a group", now
        )
        return
    await _verify(conn, session, user, now=now, ttl=rt.settings.connect_session_ttl_seconds)
    verified = await store.session(conn, session.id)
    assert verified is not None
    # The /start message follows the addition by a moment: accept it as phase 2's event.
    await _connect(rt, conn, verified, chat, user, now=now)


async def _bot_added(
    rt: Runtime, conn: AsyncConnection, bot_id: int, chat: Chat, *, actor: User, at: datetime
) -> bool:
    """Connect the group to the session waiting for it, if any; True when it did, or had (a
    later copy of the same addition). One no session accepts is only audited, and left to
    the handlers after this one."""
    now = rt.clock()
    if await _already_connected(conn, bot_id, chat.id):
        return True
    waiting = [
        session
        for session in await store.sessions_waiting_for_group(conn, bot_id)
        if rules.effective_state(session.state, session.expires_at, now)
        is SessionState.WAITING_GROUP
    ]
    verdicts = []
    for session in waiting:
        assert session.user is not None
        assert session.group_started_at is not None
        verdict = rules.judge_addition(
            verified_user_id=session.user.id,
            group_started_at=session.group_started_at,
            actor_id=actor.id,
            added_at=at,
        )
        if verdict is rules.Addition.CONNECT:
            await _connect(rt, conn, session, chat, actor, now=now)
            return True
        verdicts.append((session, verdict))
    await audit.record(
        conn,
        action="group.addition_ignored",
        actor=audit.TELEGRAM,
        now=now,
        workspace_id=verdicts[0][0].workspace_id if verdicts else None,
        bot_id=bot_id,
        detail={
            "chat_id": chat.id,
            "telegram_user_id": actor.id,
            "added_at": at.isoformat(),
            "sessions": {session.id: verdict.value for session, verdict in verdicts},
            "reason": verdicts[0][1].value if verdicts else "no session waiting for a group",
        },
    )
    log.info("group.addition_ignored", bot_id=bot_id, chat_id=chat.id)
    return False


async def _already_connected(conn: AsyncConnection, bot_id: int, chat_id: int) -> bool:
    """True when an active connection exists (a legacy service message after my_chat_member)."""
    return any(
        c.status is ConnectionStatus.ACTIVE
        for c in await store.connections_in_chat(conn, bot_id, chat_id)
    )


async def _connect(
    rt: Runtime,
    conn: AsyncConnection,
    session: ConnectSession,
    chat: Chat,
    actor: User,
    *,
    now: datetime,
) -> None:
    connection_id = f"conn_{secrets.token_hex(8)}"
    await store.add_connection(
        conn,
        {
            "id": connection_id,
            "workspace_id": session.workspace_id,
            "bot_id": session.bot_id,
            "chat_id": chat.id,
            "chat_type": chat.type,
            "title": chat.title,
            "is_forum": bool(chat.is_forum),
            "topic": session.topic,
            "status": ConnectionStatus.ACTIVE.value,
            "connected_by_user_id": actor.id,
            "session_id": session.id,
            "created_at": now,
            "updated_at": now,
        },
    )
    await store.change_session(
        conn, session.id, state=SessionState.CONNECTED.value, connection_id=connection_id
    )
    await audit.record(
        conn,
        action="group.connected",
        actor=audit.TELEGRAM,
        now=now,
        workspace_id=session.workspace_id,
        bot_id=session.bot_id,
        detail={
            "connection_id": connection_id,
            "session_id": session.id,
            "chat_id": chat.id,
            "telegram_user_id": actor.id,
        },
    )
    await events.emit(
        conn,
        rt,
        workspace_id=session.workspace_id,
        event_type=EventType.GROUP_CONNECTED,
        data=catalog.GroupData(
            connection_id=connection_id,
            bot_id=session.bot_id,
            chat_id=chat.id,
            chat_type=chat.type,
            title=chat.title,
            is_forum=bool(chat.is_forum),
            topic=session.topic,
            connected_by_user_id=actor.id,
            session_id=session.id,
        ),
        now=now,
    )
    await delivery.enqueue_confirmation(
        rt,
        conn,
        connection_id=connection_id,
        bot_id=session.bot_id,
        chat_id=chat.id,
        text=CONNECTED_REPLY,
        topic=session.topic if chat.is_forum else None,
    )
    log.info("group.connected", connection_id=connection_id, chat_id=chat.id)


async def _bot_gone(
    rt: Runtime, conn: AsyncConnection, bot_id: int, chat_id: int, *, reason: str
) -> bool:
    """Mark the chat's connections bot_removed; True when it had any."""
    affected = await store.connections_in_chat(conn, bot_id, chat_id)
    await delivery.set_bot_removed(conn, rt, affected, reason=reason)
    return bool(affected)


# --- shared --------------------------------------------------------------------------------


async def _start_taken(rt: Runtime, conn: AsyncConnection, bot_id: int) -> bool:
    """Whether another domain answers this bot's bare /start (groups.service.BARE_START_TAKEN)."""
    for taken in rt.hooks[service.BARE_START_TAKEN]:
        if await taken(conn, bot_id):
            return True
    return False


def _legacy_new_members(message: Message) -> list[User]:
    """`new_chat_member` / `new_chat_participant`: older clients' copies of the same fact."""
    from aiogram.types import User

    extra = message.model_extra or {}
    found = extra.get("new_chat_member") or extra.get("new_chat_participant")
    return [User.model_validate(found)] if isinstance(found, dict) else []


def _bot_in(members: list[User], bot_id: int) -> bool:
    return any(member.id == bot_id for member in members)


async def _reply(rt: Runtime, conn: AsyncConnection, bot_id: int, chat_id: int, text: str) -> None:
    await outbox.enqueue(conn, rt, messages.SendText(bot_id=bot_id, chat_id=chat_id, text=text))


async def _audit_refusal(
    conn: AsyncConnection,
    bot_id: int,
    session: ConnectSession | None,
    user: User,
    reason: str,
    now: datetime,
) -> None:
    await audit.record(
        conn,
        action="connect_session.refused",
        actor=audit.TELEGRAM,
        now=now,
        workspace_id=session.workspace_id if session else None,
        bot_id=bot_id,
        detail={
            "session_id": session.id if session else None,
            "telegram_user_id": user.id,
            "reason": reason,
        },
    )
