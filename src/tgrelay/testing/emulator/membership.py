"""Bots' membership in chats: who is in, Telegram's ChatMember shapes, and who may send.

A bot's status in a private chat is its standing with that user: `kicked` means the user
blocked the bot.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from tgrelay.testing.emulator import errors


class Status(enum.StrEnum):
    """ChatMember.status as the Bot API names it."""

    CREATOR = "creator"
    ADMINISTRATOR = "administrator"
    MEMBER = "member"
    RESTRICTED = "restricted"  # in the chat with some rights taken away
    LEFT = "left"  # never joined, left, or removed from a basic group
    KICKED = "kicked"  # banned from the chat; in a private chat: blocked by the user

    @property
    def is_in(self) -> bool:
        """Whether a member with this status is in the chat and may write there."""
        return self not in {Status.LEFT, Status.KICKED}


# The rights Telegram shows for a bot promoted with every right but promoting others.
_ADMIN_RIGHTS: dict[str, bool] = {
    "can_be_edited": False,
    "can_manage_chat": True,
    "can_change_info": True,
    "can_delete_messages": True,
    "can_invite_users": True,
    "can_restrict_members": True,
    "can_pin_messages": True,
    "can_manage_topics": True,
    "can_promote_members": False,
    "can_manage_video_chats": True,
    "can_post_stories": True,
    "can_edit_stories": True,
    "can_delete_stories": True,
    "is_anonymous": False,
    "can_send_welcome_messages": False,
}


# Every administrator right by name (`can_be_edited` is not one: it says whether the bot
# may edit the admin), and those the emulator's administrators hold unless withheld.
RIGHT_NAMES = frozenset(
    name for name in _ADMIN_RIGHTS if name.startswith("can_") and name != "can_be_edited"
)
ADMIN_RIGHTS = frozenset(name for name in RIGHT_NAMES if _ADMIN_RIGHTS[name])
NO_RIGHTS_WITHHELD: frozenset[str] = frozenset()


def member_json(
    user: Mapping[str, Any],
    status: Status,
    chat_type: str,
    withheld: frozenset[str] = NO_RIGHTS_WITHHELD,
) -> dict[str, Any]:
    """A ChatMember object: the user, the status and what that status carries (an
    administrator's rights, but those `withheld`)."""
    member: dict[str, Any] = {"user": dict(user), "status": str(status)}
    if status is Status.ADMINISTRATOR:
        rights = {name: granted and name not in withheld for name, granted in _ADMIN_RIGHTS.items()}
        if chat_type != "supergroup":
            del rights["can_manage_topics"]  # a supergroup-only right
        member.update(rights)
    elif status is Status.CREATOR:
        member["is_anonymous"] = False  # ChatMemberOwner always says whether it hides
    elif status is Status.KICKED:
        member["until_date"] = 0  # banned for ever
    return member


def chat_member_updated(
    *,
    chat: Mapping[str, Any],
    actor: Mapping[str, Any],
    date: int,
    user: Mapping[str, Any],
    old: Status,
    new: Status,
    old_withheld: frozenset[str] = NO_RIGHTS_WITHHELD,
    new_withheld: frozenset[str] = NO_RIGHTS_WITHHELD,
) -> dict[str, Any]:
    """A ChatMemberUpdated (the body of `my_chat_member`), keys in Telegram's order."""
    return {
        "chat": dict(chat),
        "from": dict(actor),
        "date": date,
        "old_chat_member": member_json(user, old, chat["type"], old_withheld),
        "new_chat_member": member_json(user, new, chat["type"], new_withheld),
    }


def send_refusal(chat_type: str, status: Status | None) -> errors.BotApiError | None:
    """What sendMessage answers a bot with this status in a chat of this type (None: it sends).

    None as the status means the bot never had one there.
    """
    if status is not None and status.is_in:
        return None
    if chat_type == "private":
        if status is Status.KICKED:
            return errors.BotApiError(403, "Forbidden: bot was blocked by the user")
        return None
    if status is Status.KICKED:
        return errors.BotApiError(403, f"Forbidden: bot was kicked from the {chat_type} chat")
    return errors.BotApiError(403, f"Forbidden: bot is not a member of the {chat_type} chat")


class Roster:
    """Each bot's status in each chat it has one in."""

    def __init__(self) -> None:
        self._status: dict[tuple[int, int], Status] = {}
        # Rights an administrator was promoted without (absent: every right).
        self._withheld: dict[tuple[int, int], frozenset[str]] = {}

    def status(self, chat_id: int, bot_id: int) -> Status | None:
        return self._status.get((chat_id, bot_id))

    def withheld(self, chat_id: int, bot_id: int) -> frozenset[str]:
        """The administrator rights the bot lacks in the chat."""
        return self._withheld.get((chat_id, bot_id), NO_RIGHTS_WITHHELD)

    def may(self, chat_id: int, bot_id: int, right: str) -> bool:
        """Whether the bot holds an administrator right (`can_manage_topics`, …) there."""
        status = self.status(chat_id, bot_id)
        if status is Status.CREATOR:
            return True
        return status is Status.ADMINISTRATOR and right not in self.withheld(chat_id, bot_id)

    def set(
        self,
        chat_id: int,
        bot_id: int,
        status: Status,
        *,
        withheld: frozenset[str] = NO_RIGHTS_WITHHELD,
    ) -> Status:
        """Record a new status (an administrator's rights but those `withheld`); returns the
        old status (`left` if the bot had none)."""
        old = self._status.get((chat_id, bot_id), Status.LEFT)
        self._status[(chat_id, bot_id)] = status
        self._withheld[(chat_id, bot_id)] = (
            withheld if status is Status.ADMINISTRATOR else NO_RIGHTS_WITHHELD
        )
        return old

    def admit(self, chat_id: int, bot_id: int) -> None:
        """A bot that receives a chat's updates without a status there is a plain member."""
        self._status.setdefault((chat_id, bot_id), Status.MEMBER)

    def of_chat(self, chat_id: int) -> dict[int, Status]:
        """Every bot with a status in the chat, by bot id, in the order they got one."""
        return {
            bot_id: status for (chat, bot_id), status in self._status.items() if chat == chat_id
        }

    def members(self, chat_id: int) -> list[int]:
        """The bots in the chat right now."""
        return [bot_id for bot_id, status in self.of_chat(chat_id).items() if status.is_in]
