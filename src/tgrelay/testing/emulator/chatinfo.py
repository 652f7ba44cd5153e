"""Reading chats: getChat (a ChatFullInfo) and getChatMember (a ChatMember), answered as
Telegram answers a bot that is in the chat, and refused as it refuses one that is not.

Telegram tracks every user's membership; the emulator tracks bots' only. A user it has
seen write (in any chat) counts as a plain member of the groups the bot asks about, one
it has never seen is "user not found".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tgrelay.testing.emulator import errors, membership
from tgrelay.testing.emulator.calls import Answer, Call, Method

if TYPE_CHECKING:
    from tgrelay.testing.emulator.state import EmulatorState

# What Telegram shows for a chat nobody customised: the first accent colour, the default
# reaction limit, and no gifts accepted (groups take none).
DEFAULT_ACCENT_COLOR_ID = 0
DEFAULT_MAX_REACTION_COUNT = 11
NO_GIFTS: dict[str, bool] = {
    "unlimited_gifts": False,
    "limited_gifts": False,
    "unique_gifts": False,
    "premium_subscription": False,
    "gifts_from_channels": False,
}
# The rights of a plain member in a group whose admins changed nothing.
MEMBER_PERMISSIONS: dict[str, bool] = {
    "can_send_messages": True,
    "can_send_audios": True,
    "can_send_documents": True,
    "can_send_photos": True,
    "can_send_videos": True,
    "can_send_video_notes": True,
    "can_send_voice_notes": True,
    "can_send_polls": True,
    "can_send_other_messages": True,
    "can_add_web_page_previews": True,
    "can_change_info": True,
    "can_invite_users": True,
    "can_pin_messages": True,
    "can_manage_topics": True,
}


def full_info(chat: dict[str, Any]) -> dict[str, Any]:
    """The ChatFullInfo of a chat: its Chat fields, then what getChat adds, in Telegram's
    order."""
    info = dict(chat)
    if chat["type"] != "private":
        info["permissions"] = dict(MEMBER_PERMISSIONS)
    info["accent_color_id"] = DEFAULT_ACCENT_COLOR_ID
    info["max_reaction_count"] = DEFAULT_MAX_REACTION_COUNT
    info["accepted_gift_types"] = dict(NO_GIFTS)
    return info


def get_chat_info(state: EmulatorState, bot_id: int, chat_id: int | str) -> dict[str, Any]:
    """getChat: the chat as the bot may see it (400 "chat not found", 403 when it is out)."""
    return full_info(state.resolve_chat(bot_id, chat_id))


def get_member(
    state: EmulatorState, bot_id: int, chat_id: int | str, user_id: int
) -> dict[str, Any]:
    """getChatMember: a bot's status and rights from the roster (`left` if it never had
    one), a user the emulator has seen as a member."""
    chat = state.resolve_chat(bot_id, chat_id)
    if user_id in {bot.id for bot in state.bots()}:
        user = state.bot(user_id).user_json()
        status = state.roster.status(chat["id"], user_id) or membership.Status.LEFT
        withheld = state.roster.withheld(chat["id"], user_id)
        return membership.member_json(user, status, chat["type"], withheld)
    seen = state.chats.user(user_id)
    if seen is None:
        raise errors.bad_request("user not found")
    return membership.member_json(seen, membership.Status.MEMBER, chat["type"])


async def get_chat(call: Call) -> Answer:
    return Answer(get_chat_info(call.emulator.state, call.bot.id, call.params.chat_id()))


async def get_chat_member(call: Call) -> Answer:
    params = call.params
    chat_id = params.chat_id()
    user_id = params.optional_integer("user_id")
    if user_id is None:
        raise errors.bad_request("user_id is empty")
    return Answer(get_member(call.emulator.state, call.bot.id, chat_id, user_id))


METHODS: dict[str, Method] = {"getchat": get_chat, "getchatmember": get_chat_member}
