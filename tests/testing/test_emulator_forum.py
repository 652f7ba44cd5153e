"""Forum topics: createForumTopic, sending into a topic, and users writing in one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import (
    ALICE,
    BOB,
    FIXTURE_BOT_ID,
    NOW,
    OPS_GROUP,
    SUPPORT_DESK_ID,
    call,
    load_fixture,
    swap,
)

TOPIC = "#42 Billing: card declined"


@pytest.fixture
def forum(emulator: Emulator, bot: BotRecord) -> dict[str, Any]:
    """The Support Desk forum with the bot as an administrator (join message id 1)."""
    chat = emulator.create_chat(
        "supergroup", "Support Desk", is_forum=True, chat_id=SUPPORT_DESK_ID
    )
    emulator.add_bot(chat["id"], bot.id, ALICE, status="administrator")
    return chat


async def test_create_topic_then_talk_in_it(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """A topic's id is its opening message's; messages there reply to it and are listed with it."""
    other = emulator.create_bot("other_bot")
    emulator.add_bot(forum["id"], other.id, ALICE)  # join message id 2
    created = await call(
        client, bot, "createForumTopic", chat_id=forum["id"], name=TOPIC, icon_color=7322096
    )
    topic: dict[str, Any] = created[1]["result"]
    opening = {
        "message_id": 3,
        "message_thread_id": 3,
        "from": bot.user_json(),
        "chat": forum,
        "date": NOW,
        "is_topic_message": True,
        "forum_topic_created": {"name": TOPIC, "icon_color": 7322096},
    }
    keyboard = {"inline_keyboard": [[{"text": "Close", "callback_data": "ticket:42:close"}]]}
    sent = await call(
        client,
        bot,
        "sendMessage",
        chat_id=forum["id"],
        text="Ticket opened",
        message_thread_id=3,
        reply_markup=keyboard,
    )
    written = emulator.send_message(
        bot.id, BOB, {"id": forum["id"]}, "Looking into it now", message_thread_id=3
    )
    expected_user = swap(
        load_fixture("update_forum_topic_message"),
        {FIXTURE_BOT_ID: bot.id, 100000008: written["update_id"], 55: 3, 57: 5},
    )
    expected_user["message"]["date"] = NOW
    expected_user["message"]["reply_to_message"]["date"] = NOW
    assert created == (
        200,
        {"ok": True, "result": {"message_thread_id": 3, "name": TOPIC, "icon_color": 7322096}},
    )
    assert sent == (
        200,
        {
            "ok": True,
            "result": {
                "message_id": 4,
                "message_thread_id": 3,
                "from": bot.user_json(),
                "chat": forum,
                "date": NOW,
                "is_topic_message": True,
                "reply_to_message": opening,
                "text": "Ticket opened",
                "reply_markup": keyboard,
            },
        },
    )
    assert written == expected_user
    assert emulator.pending_updates(other.id)[-1]["message"] == opening
    listed = await client.get(f"/_emulator/chats/{forum['id']}/messages")
    assert (listed.json(), emulator.chat(forum["id"])["topics"]) == (
        [sent[1]["result"]],
        [{**topic, "is_closed": False}],
    )


@pytest.mark.parametrize(
    ("setup", "params", "description"),
    [
        ("plain", {"name": TOPIC}, "Bad Request: the chat is not a forum"),
        ("member", {"name": TOPIC}, "Bad Request: not enough rights to create a topic"),
        ("admin", {"name": ""}, "Bad Request: TOPIC_TITLE_EMPTY"),
    ],
)
async def test_create_topic_refusals(
    client: httpx.AsyncClient,
    emulator: Emulator,
    bot: BotRecord,
    setup: str,
    params: dict[str, Any],
    description: str,
) -> None:
    """Topics open only in forums, only by admins, and only with a name."""
    chat = emulator.create_chat("supergroup", "Desk", is_forum=setup != "plain")
    emulator.add_bot(
        chat["id"], bot.id, ALICE, status="member" if setup == "member" else "administrator"
    )
    answer = await call(client, bot, "createForumTopic", chat_id=chat["id"], **params)
    assert answer == (400, {"ok": False, "error_code": 400, "description": description})


async def test_unknown_thread_is_refused_and_threads_outside_forums_ignored(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """In a forum an unknown thread is 400; in a plain group message_thread_id is dropped."""
    emulator.send_message(bot.id, BOB, OPS_GROUP, "hi")
    unknown = await call(
        client, bot, "sendMessage", chat_id=forum["id"], text="x", message_thread_id=99
    )
    plain = await call(
        client, bot, "sendMessage", chat_id=OPS_GROUP["id"], text="x", message_thread_id=99
    )
    assert (unknown, "message_thread_id" in plain[1]["result"]) == (
        (
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message thread not found",
            },
        ),
        False,
    )


async def test_users_may_write_in_topics_the_emulator_never_saw_opened(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """A user's topic message makes the topic known, so the bot can answer in it."""
    response = await client.post(
        "/_emulator/updates",
        json={
            "bot_id": bot.id,
            "from": BOB,
            "chat": {"id": forum["id"]},
            "text": "anyone?",
            "message_thread_id": 77,
        },
    )
    answer = await call(
        client, bot, "sendMessage", chat_id=forum["id"], text="here", message_thread_id=77
    )
    message = response.json()["message"]
    assert (
        message["message_thread_id"],
        message["is_topic_message"],
        "reply_to_message" in message,
    ) == (
        77,
        True,
        False,
    )
    assert (
        answer[0],
        answer[1]["result"]["message_thread_id"],
        emulator.chat(forum["id"])["topics"],
    ) == (
        200,
        77,
        [
            {
                "message_thread_id": 77,
                "name": "Topic 77",
                "icon_color": 16478047,
                "is_closed": False,
            }
        ],
    )


def ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def refused(description: str, code: int = 400, **parameters: Any) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return code, body


async def test_edit_close_and_reopen_a_topic(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """Each change answers True, updates the topic and sends the other bots its service message."""
    other = emulator.create_bot("other_bot")
    emulator.add_bot(forum["id"], other.id, ALICE)  # message 2
    await call(client, bot, "createForumTopic", chat_id=forum["id"], name=TOPIC)  # 3
    answers = [
        await call(
            client, bot, "editForumTopic", chat_id=forum["id"], message_thread_id=3, name="#42 Done"
        ),
        await call(
            client,
            bot,
            "editForumTopic",
            chat_id=forum["id"],
            message_thread_id=3,
            icon_custom_emoji_id="5312536423851630001",
        ),
        await call(client, bot, "closeForumTopic", chat_id=forum["id"], message_thread_id=3),
        await call(client, bot, "reopenForumTopic", chat_id=forum["id"], message_thread_id=3),
    ]
    services = [
        {k: v for k, v in update["message"].items() if k.startswith("forum_topic")}
        for update in emulator.pending_updates(other.id)[-4:]
    ]
    assert answers == [ok(True)] * 4
    assert services == [
        {"forum_topic_edited": {"name": "#42 Done"}},
        {"forum_topic_edited": {"icon_custom_emoji_id": "5312536423851630001"}},
        {"forum_topic_closed": {}},
        {"forum_topic_reopened": {}},
    ]
    assert emulator.chat(forum["id"])["topics"] == [
        {
            "message_thread_id": 3,
            "name": "#42 Done",
            "icon_color": 9367192,
            "icon_custom_emoji_id": "5312536423851630001",
            "is_closed": False,
        }
    ]


async def test_topic_management_refusals(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """Unchanged topics are TOPIC_NOT_MODIFIED; a bot that is no admin may not manage topics."""
    member = emulator.create_bot("member_bot")
    emulator.add_bot(forum["id"], member.id, ALICE)
    await call(client, bot, "createForumTopic", chat_id=forum["id"], name=TOPIC)  # 3
    chat = forum["id"]
    answers = [
        await call(client, bot, "editForumTopic", chat_id=chat, message_thread_id=3, name=TOPIC),
        await call(client, bot, "reopenForumTopic", chat_id=chat, message_thread_id=3),
        await call(client, bot, "closeForumTopic", chat_id=chat, message_thread_id=99),
        await call(client, member, "closeForumTopic", chat_id=chat, message_thread_id=3),
        await call(client, member, "editForumTopic", chat_id=chat, message_thread_id=3, name="x"),
    ]
    assert answers == [
        refused("Bad Request: TOPIC_NOT_MODIFIED"),
        refused("Bad Request: TOPIC_NOT_MODIFIED"),
        refused("Bad Request: message thread not found"),
        refused("Bad Request: not enough rights to manage topics"),
        refused("Bad Request: not enough rights to manage topics"),
    ]


async def test_a_closed_topic_takes_messages_only_from_topic_managers(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """In a closed topic a member bot gets TOPIC_CLOSED; the admin bot still writes there."""
    member = emulator.create_bot("member_bot")
    emulator.add_bot(forum["id"], member.id, ALICE)
    await call(client, bot, "createForumTopic", chat_id=forum["id"], name=TOPIC)  # 3
    await call(client, bot, "closeForumTopic", chat_id=forum["id"], message_thread_id=3)
    by_member = await call(
        client, member, "sendMessage", chat_id=forum["id"], text="x", message_thread_id=3
    )
    by_admin = await call(
        client, bot, "sendMessage", chat_id=forum["id"], text="closed", message_thread_id=3
    )
    assert (by_member, by_admin[0]) == (refused("Bad Request: TOPIC_CLOSED"), 200)


async def test_topic_creation_limit_answers_429_until_the_window_passes(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord, forum: dict[str, Any]
) -> None:
    """With a limit of 2 a minute, the third topic waits for retry_after seconds of the clock."""
    response = await client.put("/_emulator/topic-limit", json={"per_chat": [2, 60]})
    answers = [
        await call(client, bot, "createForumTopic", chat_id=forum["id"], name=f"#{n}")
        for n in (1, 2, 3)
    ]
    emulator.clock.advance(59)
    still = await call(client, bot, "createForumTopic", chat_id=forum["id"], name="#3")
    emulator.clock.advance(1)
    later = await call(client, bot, "createForumTopic", chat_id=forum["id"], name="#3")
    assert (response.json(), [status for status, _ in answers[:2]]) == (
        {"per_chat": [2, 60.0]},
        [200, 200],
    )
    assert (answers[2], still, later[0]) == (
        refused("Too Many Requests: retry after 60", 429, retry_after=60),
        refused("Too Many Requests: retry after 1", 429, retry_after=1),
        200,
    )


async def test_an_admin_without_can_manage_topics_may_not_manage_them(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Promoted without can_manage_topics, the bot sees the right off and is refused topics."""
    chat = emulator.create_chat("supergroup", "Desk", is_forum=True)
    promoted = await client.post(
        f"/_emulator/chats/{chat['id']}/members",
        json={
            "bot_id": bot.id,
            "by": ALICE,
            "status": "administrator",
            "rights": {"can_manage_topics": False},
        },
    )
    emulator.send_message(bot.id, BOB, {"id": chat["id"]}, "hi", message_thread_id=9)
    answers = [
        await call(client, bot, "createForumTopic", chat_id=chat["id"], name=TOPIC),
        await call(client, bot, "closeForumTopic", chat_id=chat["id"], message_thread_id=9),
    ]
    emulator.add_bot(chat["id"], bot.id, ALICE, status="administrator")
    granted = await call(client, bot, "closeForumTopic", chat_id=chat["id"], message_thread_id=9)
    rights = promoted.json()[0]["my_chat_member"]["new_chat_member"]
    assert (rights["status"], rights["can_manage_topics"], rights["can_pin_messages"]) == (
        "administrator",
        False,
        True,
    )
    assert (answers, granted) == (
        [
            refused("Bad Request: not enough rights to create a topic"),
            refused("Bad Request: not enough rights to manage topics"),
        ],
        ok(True),
    )
