"""TelegramClient.get_chat / get_chat_member against the emulator: small records, our errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tgrelay import errors
from tgrelay.observability import Metrics
from tgrelay.telegram.client import ChatInfo, MemberInfo, TelegramClients
from tgrelay.testing.emulator import membership
from tgrelay.testing.emulator_server import RunningEmulator

ALICE = {"id": 5551234, "is_bot": False, "first_name": "Alice"}


@pytest.fixture
async def clients(emulator: RunningEmulator) -> AsyncIterator[TelegramClients]:
    pool = TelegramClients(emulator.base_url, Metrics())
    yield pool
    await pool.aclose()


async def test_get_chat_reads_title_and_forum(
    emulator: RunningEmulator, clients: TelegramClients
) -> None:
    """get_chat answers the chat's id, type, title and whether topics are on."""
    bot = emulator.emulator.create_bot("desk_bot")
    forum = emulator.emulator.create_chat("supergroup", "Support", is_forum=True)
    plain = emulator.emulator.create_chat("supergroup", "Ops")
    for chat in (forum, plain):
        emulator.emulator.add_bot(chat["id"], bot.id, ALICE)
    client = clients.for_token(bot.token)

    assert await client.get_chat(forum["id"]) == ChatInfo(
        id=forum["id"], type="supergroup", title="Support", is_forum=True
    )
    assert await client.get_chat(plain["id"]) == ChatInfo(
        id=plain["id"], type="supergroup", title="Ops", is_forum=False
    )


async def test_get_chat_member_reads_status_and_manage_topics(
    emulator: RunningEmulator, clients: TelegramClients
) -> None:
    """Administrators manage topics when granted, owners always, members never."""
    telegram = emulator.emulator
    bot = telegram.create_bot("desk_bot")
    lacking = telegram.create_bot("lacking_bot")
    member = telegram.create_bot("member_bot")
    owner = telegram.create_bot("owner_bot")
    chat = telegram.create_chat("supergroup", "Support", is_forum=True)
    telegram.add_bot(chat["id"], bot.id, ALICE, status="administrator")
    telegram.add_bot(
        chat["id"], lacking.id, ALICE, status="administrator", rights={"can_manage_topics": False}
    )
    telegram.add_bot(chat["id"], member.id, ALICE)
    telegram.state.roster.set(chat["id"], owner.id, membership.Status.CREATOR)
    client = clients.for_token(bot.token)

    members = [
        await client.get_chat_member(chat["id"], b.id) for b in (bot, lacking, member, owner)
    ]

    assert members == [
        MemberInfo(user_id=bot.id, status="administrator", can_manage_topics=True),
        MemberInfo(user_id=lacking.id, status="administrator", can_manage_topics=False),
        MemberInfo(user_id=member.id, status="member", can_manage_topics=False),
        MemberInfo(user_id=owner.id, status="creator", can_manage_topics=True),
    ]


async def test_refusals_become_our_errors(
    emulator: RunningEmulator, clients: TelegramClients
) -> None:
    """An unknown chat is TelegramBadRequest, a group the bot was kicked from TelegramForbidden."""
    telegram = emulator.emulator
    bot = telegram.create_bot("desk_bot")
    chat = telegram.create_chat("supergroup", "Support", is_forum=True)
    telegram.add_bot(chat["id"], bot.id, ALICE)
    telegram.remove_bot(chat["id"], bot.id, by=ALICE)
    client = clients.for_token(bot.token)

    with pytest.raises(errors.TelegramBadRequest) as unknown:
        await client.get_chat(-1009999999999)
    with pytest.raises(errors.TelegramForbidden) as kicked:
        await client.get_chat_member(chat["id"], bot.id)

    assert (unknown.value.method, unknown.value.message) == (
        "getChat",
        "getChat: Bad Request: chat not found",
    )
    assert kicked.value.method == "getChatMember"
