"""Group life as the control surface plays it: groups made, bots added and removed,
basic groups upgraded to supergroups, users blocking bots.

Each change queues what Telegram sends: `my_chat_member` for the bot concerned and the
service message for every bot in the chat. Functions return those deliveries so the
caller can push them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tgrelay.testing.emulator import errors, membership, objects
from tgrelay.testing.emulator.state import EmulatorState

Delivery = tuple[int, dict[str, Any]]  # (bot id, the Update as queued)
# Supergroup and channel ids are -100 followed by the channel's own id: at most -10**12.
SUPERGROUP_ID_LIMIT = -(10**12)

# Who service messages come from when an anonymous admin acts (with `sender_chat` = the group).
ANONYMOUS_ADMIN: dict[str, Any] = {
    "id": 1087968824,
    "is_bot": True,
    "first_name": "Group",
    "username": "GroupAnonymousBot",
}


def create_chat(
    state: EmulatorState,
    *,
    chat_type: str,
    title: str,
    is_forum: bool = False,
    username: str | None = None,
    chat_id: int | None = None,
) -> dict[str, Any]:
    """A new group or supergroup (a forum if asked) with no bots in it; a fresh id unless
    `chat_id` names one of the right shape."""
    if chat_type not in {"group", "supergroup"}:
        raise errors.InvalidPayload("type must be group or supergroup")
    if is_forum and chat_type != "supergroup":
        raise errors.InvalidPayload("only a supergroup can be a forum")
    if chat_id is not None:
        if chat_id >= 0 or (chat_id <= SUPERGROUP_ID_LIMIT) != (chat_type == "supergroup"):
            raise errors.InvalidPayload(
                "a group id is negative; a supergroup id is -100 followed by 10 digits"
            )
        if state.chats.get(chat_id) is not None:
            raise errors.InvalidPayload(f"chat {chat_id} exists")
    chat = objects.Chat(
        id=chat_id if chat_id is not None else state.new_chat_id(chat_type),
        title=title,
        username=username,
        type=chat_type,
        is_forum=True if is_forum else None,
    )
    return state.chats.create(chat.to_json())


def view(state: EmulatorState, chat_id: int) -> dict[str, Any]:
    """A chat for the control surface: the Chat, each bot's status, topics and upgrade."""
    shown = dict(_chat(state, chat_id))
    shown["members"] = [
        {"bot_id": bot_id, "status": str(status)}
        for bot_id, status in state.roster.of_chat(chat_id).items()
    ]
    if shown.get("is_forum"):
        shown["topics"] = [
            {**topic.to_json(), "is_closed": topic.is_closed}
            for topic in state.forums.of_chat(chat_id)
        ]
    new_id = state.chats.migrated_to(chat_id)
    if new_id is not None:
        shown["migrated_to_chat_id"] = new_id
    return shown


def add_bot(
    state: EmulatorState,
    chat_id: int,
    bot_id: int,
    *,
    by: objects.User,
    status: membership.Status = membership.Status.MEMBER,
    withheld: frozenset[str] = membership.NO_RIGHTS_WITHHELD,
) -> list[Delivery]:
    """`by` adds the bot (or changes its status or an administrator's rights, less those
    `withheld`): `my_chat_member`, and when it joins, the `new_chat_members` message for
    every bot in the group."""
    chat = _group(state, chat_id)
    if status not in {membership.Status.MEMBER, membership.Status.ADMINISTRATOR}:
        raise errors.InvalidPayload("status must be member or administrator")
    if withheld and status is not membership.Status.ADMINISTRATOR:
        raise errors.InvalidPayload("only an administrator has rights")
    if unknown := withheld - membership.RIGHT_NAMES:
        raise errors.InvalidPayload(f"unknown rights: {', '.join(sorted(unknown))}")
    withheld &= membership.ADMIN_RIGHTS  # withholding a right never granted changes nothing
    old = state.roster.status(chat_id, bot_id)
    if old is status and state.roster.withheld(chat_id, bot_id) == withheld:
        raise errors.InvalidPayload(f"bot {bot_id} is already {status} in chat {chat_id}")
    actor = by.to_json()
    deliveries = [
        (bot_id, state.change_status(bot_id, chat, actor=actor, new=status, withheld=withheld))
    ]
    if old is None or not old.is_in:
        bot_user = state.bot(bot_id).user_json()
        content: dict[str, Any] = {"new_chat_members": [bot_user]}
        if chat["type"] == "group":
            # Basic groups repeat the first new member in two legacy fields, first.
            content = {"new_chat_participant": bot_user, "new_chat_member": bot_user, **content}
        deliveries += announce(state, chat, sender=actor, content=content)
    return deliveries


def remove_bot(
    state: EmulatorState, chat_id: int, bot_id: int, *, by: objects.User | None = None
) -> list[Delivery]:
    """`by` removes the bot (status `kicked`), or it leaves on its own (`left`); it gets
    `my_chat_member`, and it and the other bots the `left_chat_member` message."""
    chat = _group(state, chat_id)
    old = state.roster.status(chat_id, bot_id)
    if old is None or not old.is_in:
        raise errors.InvalidPayload(f"bot {bot_id} is not a member of chat {chat_id}")
    bot_user = state.bot(bot_id).user_json()
    actor = by.to_json() if by is not None else bot_user
    audience = state.roster.members(chat_id)
    new = membership.Status.KICKED if by is not None else membership.Status.LEFT
    deliveries = [(bot_id, state.change_status(bot_id, chat, actor=actor, new=new))]
    content: dict[str, Any] = {"left_chat_member": bot_user}
    if chat["type"] == "group":
        content = {"left_chat_participant": bot_user, **content}
    deliveries += announce(state, chat, sender=actor, content=content, audience=audience)
    return deliveries


def migrate(
    state: EmulatorState, chat_id: int, *, by: objects.User | None = None
) -> tuple[dict[str, Any], list[Delivery]]:
    """Upgrade a basic group to a supergroup the bots stay in; returns the new chat.

    Every bot gets `migrate_to_chat_id` in the old group, then `migrate_from_chat_id` in
    the new one. Without `by` an anonymous admin did it.
    """
    chat = _group(state, chat_id)
    if chat["type"] != "group":
        raise errors.InvalidPayload("only a basic group can be upgraded to a supergroup")
    staying = {b: s for b, s in state.roster.of_chat(chat_id).items() if s.is_in}
    new_chat = state.chats.migrate(
        chat_id,
        objects.Chat(
            id=state.new_chat_id("supergroup"),
            title=chat["title"],
            username=chat.get("username"),
            type="supergroup",
        ).to_json(),
    )
    for bot_id, status in staying.items():
        withheld = state.roster.withheld(chat_id, bot_id)
        state.roster.set(new_chat["id"], bot_id, status, withheld=withheld)
    sender = by.to_json() if by is not None else ANONYMOUS_ADMIN
    deliveries = []
    for where, content in (
        (chat, {"migrate_to_chat_id": new_chat["id"]}),
        (new_chat, {"migrate_from_chat_id": chat_id}),
    ):
        deliveries += announce(
            state,
            where,
            sender=sender,
            sender_chat=where if by is None else None,
            content=content,
            audience=list(staying),
        )
    return new_chat, deliveries


def set_blocked(state: EmulatorState, user_id: int, bot_id: int, *, blocked: bool) -> Delivery:
    """The user blocks (or unblocks) the bot: `my_chat_member` in their private chat."""
    chat = state.chats.get(user_id)
    if chat is None or chat["type"] != "private" or not state.knows_chat(bot_id, user_id):
        raise errors.InvalidPayload(f"user {user_id} has no private chat with bot {bot_id}")
    is_blocked = state.roster.status(user_id, bot_id) is membership.Status.KICKED
    if is_blocked == blocked:
        raise errors.InvalidPayload(
            f"user {user_id} has {'already' if blocked else 'not'} blocked bot {bot_id}"
        )
    user = state.chats.user(user_id) or _user_of(chat)
    new = membership.Status.KICKED if blocked else membership.Status.MEMBER
    return bot_id, state.change_status(bot_id, chat, actor=user, new=new)


def announce(
    state: EmulatorState,
    chat: dict[str, Any],
    *,
    sender: dict[str, Any],
    content: Mapping[str, Any],
    sender_chat: dict[str, Any] | None = None,
    message_thread_id: int | None = None,
    audience: list[int] | None = None,
    poster: int | None = None,
) -> list[Delivery]:
    """Post a service message in a group and queue it for `audience` (default: its bots)."""
    bots = state.roster.members(chat["id"]) if audience is None else audience
    if poster is None and not bots:
        return []
    message = state.chats.service(
        poster if poster is not None else bots[0],
        chat,
        sender=sender,
        sender_chat=sender_chat,
        content=content,
        message_thread_id=message_thread_id,
    )
    return [(bot_id, state.enqueue(bot_id, {"message": copy.deepcopy(message)})) for bot_id in bots]


def _chat(state: EmulatorState, chat_id: int) -> dict[str, Any]:
    chat = state.chats.get(chat_id)
    if chat is None:
        raise errors.UnknownChat(chat_id)
    return chat


def _group(state: EmulatorState, chat_id: int) -> dict[str, Any]:
    """A group or supergroup that still takes changes (not one upgraded away)."""
    chat = _chat(state, chat_id)
    if chat["type"] not in {"group", "supergroup"}:
        raise errors.InvalidPayload(f"chat {chat_id} is not a group or supergroup")
    if state.chats.migrated_to(chat_id) is not None:
        raise errors.InvalidPayload(f"chat {chat_id} was upgraded to a supergroup")
    return chat


def _user_of(chat: Mapping[str, Any]) -> dict[str, Any]:
    """A private chat's user, when the emulator never saw their own User object."""
    names = {k: chat[k] for k in ("first_name", "last_name", "username") if k in chat}
    return {"id": chat["id"], "is_bot": False, **names}
