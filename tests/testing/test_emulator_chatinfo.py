"""getChat and getChatMember: Telegram's shapes, its refusals, and aiogram parsing each answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import (
    ChatFullInfo,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
)

from tgrelay.testing.emulator import BotRecord, Emulator, membership
from tgrelay.testing.emulator.chatinfo import MEMBER_PERMISSIONS, NO_GIFTS
from tgrelay.testing.emulator_server import RunningEmulator

from .conftest import ALICE, BOB, SUPPORT_DESK_ID, bad_request, call

FULL_INFO_TAIL: dict[str, Any] = {
    "accent_color_id": 0,
    "max_reaction_count": 11,
    "accepted_gift_types": NO_GIFTS,
}


def admin_rights(**changes: bool) -> dict[str, bool]:
    """The rights a promoted bot shows in a supergroup, some changed."""
    return {
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
        **changes,
    }


@pytest.fixture
def forum(emulator: Emulator, bot: BotRecord) -> dict[str, Any]:
    """The Support Desk forum with the bot an administrator lacking can_manage_topics."""
    chat = emulator.create_chat(
        "supergroup", "Support Desk", is_forum=True, chat_id=SUPPORT_DESK_ID
    )
    emulator.add_bot(
        chat["id"], bot.id, ALICE, status="administrator", rights={"can_manage_topics": False}
    )
    return chat


async def test_get_chat_answers_a_forum_full_info(
    client: httpx.AsyncClient, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """getChat on a forum the bot is in answers its ChatFullInfo with is_forum."""
    answer = await call(client, bot, "getChat", chat_id=SUPPORT_DESK_ID)

    assert answer == (
        200,
        {
            "ok": True,
            "result": {
                "id": SUPPORT_DESK_ID,
                "title": "Support Desk",
                "type": "supergroup",
                "is_forum": True,
                "permissions": MEMBER_PERMISSIONS,
                **FULL_INFO_TAIL,
            },
        },
    )


async def test_get_chat_of_a_private_chat_has_no_permissions(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A private chat's ChatFullInfo carries the user's names and no group permissions."""
    emulator.send_message(bot.id, ALICE, None, "hi")

    answer = await call(client, bot, "getChat", chat_id=ALICE["id"])

    assert answer == (
        200,
        {
            "ok": True,
            "result": {
                "id": ALICE["id"],
                "first_name": "Alice",
                "username": "alice",
                "type": "private",
                **FULL_INFO_TAIL,
            },
        },
    )


async def test_get_chat_refusals(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """Unknown chats are "chat not found"; a group the bot was kicked from is 403."""
    plain = emulator.create_chat("supergroup", "Ops")
    emulator.add_bot(plain["id"], bot.id, ALICE)
    emulator.remove_bot(plain["id"], bot.id, by=ALICE)

    unknown = await call(client, bot, "getChat", chat_id=-1009999999999)
    private = await call(client, bot, "getChat", chat_id=BOB["id"])
    kicked = await call(client, bot, "getChat", chat_id=plain["id"])

    assert unknown == bad_request("chat not found")
    assert private == bad_request("chat not found")
    assert kicked == (
        403,
        {
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot was kicked from the supergroup chat",
        },
    )


async def test_get_chat_member_shows_the_rights_the_bot_was_given(
    client: httpx.AsyncClient, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """An administrator bot's ChatMember carries every right, the withheld ones false."""
    answer = await call(client, bot, "getChatMember", chat_id=SUPPORT_DESK_ID, user_id=bot.id)

    assert answer == (
        200,
        {
            "ok": True,
            "result": {
                "user": bot.user_json(),
                "status": "administrator",
                **admin_rights(can_manage_topics=False),
            },
        },
    )


async def test_get_chat_member_of_members_left_and_strangers(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """Another bot is member or left as the roster says; a seen user is a member; an
    unknown one is "user not found"; a missing user_id is refused."""
    member = emulator.create_bot("member_bot")
    outsider = emulator.create_bot("outsider_bot")
    emulator.add_bot(SUPPORT_DESK_ID, member.id, ALICE)
    emulator.send_message(bot.id, BOB, {"id": SUPPORT_DESK_ID}, "hello")

    as_member = await call(client, bot, "getChatMember", chat_id=SUPPORT_DESK_ID, user_id=member.id)
    as_left = await call(client, bot, "getChatMember", chat_id=SUPPORT_DESK_ID, user_id=outsider.id)
    as_user = await call(client, bot, "getChatMember", chat_id=SUPPORT_DESK_ID, user_id=BOB["id"])
    stranger = await call(client, bot, "getChatMember", chat_id=SUPPORT_DESK_ID, user_id=42)
    missing = await call(client, bot, "getChatMember", chat_id=SUPPORT_DESK_ID)

    assert as_member == (
        200,
        {"ok": True, "result": {"user": member.user_json(), "status": "member"}},
    )
    assert as_left == (
        200,
        {"ok": True, "result": {"user": outsider.user_json(), "status": "left"}},
    )
    assert as_user == (200, {"ok": True, "result": {"user": BOB, "status": "member"}})
    assert stranger == bad_request("user not found")
    assert missing == bad_request("user_id is empty")


async def test_aiogram_parses_chat_and_every_member_shape(running: RunningEmulator) -> None:
    """aiogram parses getChat and the owner, administrator, member, left and banned shapes."""
    emulator = running.emulator
    record = emulator.create_bot("desk_bot")
    owner = emulator.create_bot("owner_bot")
    member = emulator.create_bot("member_bot")
    banned = emulator.create_bot("banned_bot")
    outsider = emulator.create_bot("outsider_bot")
    chat = emulator.create_chat("supergroup", "Support Desk", is_forum=True)
    emulator.add_bot(
        chat["id"], record.id, ALICE, status="administrator", rights={"can_manage_topics": False}
    )
    emulator.add_bot(chat["id"], member.id, ALICE)
    emulator.add_bot(chat["id"], banned.id, ALICE)
    emulator.remove_bot(chat["id"], banned.id, by=ALICE)
    emulator.state.roster.set(chat["id"], owner.id, membership.Status.CREATOR)

    async with Bot(record.token, session=AiohttpSession(api=running.api_server)) as bot:
        info = await bot.get_chat(chat["id"])
        as_admin = await bot.get_chat_member(chat["id"], record.id)
        as_owner = await bot.get_chat_member(chat["id"], owner.id)
        as_member = await bot.get_chat_member(chat["id"], member.id)
        as_banned = await bot.get_chat_member(chat["id"], banned.id)
        as_left = await bot.get_chat_member(chat["id"], outsider.id)
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.get_chat(-1009999999999)
        emulator.remove_bot(chat["id"], record.id, by=ALICE)
        with pytest.raises(TelegramForbiddenError, match="kicked from the supergroup chat"):
            await bot.get_chat_member(chat["id"], record.id)

    assert isinstance(info, ChatFullInfo)
    assert (info.id, info.title, info.type, info.is_forum) == (
        chat["id"],
        "Support Desk",
        "supergroup",
        True,
    )
    assert isinstance(as_admin, ChatMemberAdministrator)
    assert (as_admin.user.id, as_admin.can_manage_topics, as_admin.can_pin_messages) == (
        record.id,
        False,
        True,
    )
    assert isinstance(as_owner, ChatMemberOwner)
    assert (as_owner.user.id, as_owner.is_anonymous) == (owner.id, False)
    assert isinstance(as_member, ChatMemberMember)
    assert as_member.user.id == member.id
    assert isinstance(as_banned, ChatMemberBanned)
    assert (as_banned.user.id, as_banned.status) == (banned.id, "kicked")
    assert isinstance(as_left, ChatMemberLeft)
    assert as_left.user.id == outsider.id
