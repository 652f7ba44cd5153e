"""Forum topic management: createForumTopic, editForumTopic, closeForumTopic,
reopenForumTopic, each answered as Telegram answers them.

Only a bot that manages topics (an administrator) may do these; each change posts its
service message in the topic, which the forum's other bots receive. Opening topics is
limited per chat when `EmulatorState.topic_limit` is set.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tgrelay.testing.emulator import errors, forum, groups
from tgrelay.testing.emulator.calls import Answer, Call, Method

if TYPE_CHECKING:
    from tgrelay.testing.emulator.state import EmulatorState


def _forum(
    state: EmulatorState, bot_id: int, chat_id: int | str, *, refusal: str
) -> dict[str, Any]:
    """The forum the bot means, if it may manage topics there."""
    chat = state.resolve_chat(bot_id, chat_id)
    if not chat.get("is_forum"):
        raise errors.bad_request("the chat is not a forum")
    if not state.manages_topics(bot_id, chat):
        raise errors.bad_request(refusal)
    return chat


def _topic(
    state: EmulatorState, chat: dict[str, Any], message_thread_id: int | None
) -> forum.Topic:
    if message_thread_id is None:
        raise errors.bad_request("invalid message thread identifier specified")
    topic = state.forums.get(chat["id"], message_thread_id)
    if topic is None:
        raise errors.bad_request("message thread not found")
    return topic


def _service(
    state: EmulatorState, bot_id: int, chat: dict[str, Any], thread_id: int, content: dict[str, Any]
) -> list[groups.Delivery]:
    """Post a topic's service message from the bot; the forum's other bots receive it."""
    others = [member for member in state.roster.members(chat["id"]) if member != bot_id]
    return groups.announce(
        state,
        chat,
        sender=state.bot(bot_id).user_json(),
        content=content,
        message_thread_id=thread_id,
        audience=others,
        poster=bot_id,
    )


def create(
    state: EmulatorState,
    bot_id: int,
    chat_id: int | str,
    *,
    name: str,
    icon_color: int | None = None,
    icon_custom_emoji_id: str | None = None,
) -> tuple[forum.Topic, list[groups.Delivery]]:
    """createForumTopic: the bot opens a topic; its id is the id of the opening message."""
    chat = _forum(state, bot_id, chat_id, refusal="not enough rights to create a topic")
    if not name:
        raise errors.bad_request("TOPIC_TITLE_EMPTY")
    now = state.clock.now().timestamp()
    state.topic_limit.check(chat["id"], now)
    thread_id = state.chats.next_message_id(bot_id, chat)
    topic = forum.Topic(
        message_thread_id=thread_id,
        name=name,
        icon_color=icon_color if icon_color is not None else forum.default_icon_color(thread_id),
        icon_custom_emoji_id=icon_custom_emoji_id,
    )
    state.forums.add(chat["id"], topic)
    state.topic_limit.record(chat["id"], now)
    deliveries = _service(
        state, bot_id, chat, thread_id, {"forum_topic_created": topic.created_json()}
    )
    return topic, deliveries


def edit(
    state: EmulatorState,
    bot_id: int,
    chat_id: int | str,
    message_thread_id: int | None,
    *,
    name: str | None = None,
    icon_custom_emoji_id: str | None = None,
) -> list[groups.Delivery]:
    """editForumTopic: a new name and/or icon (an empty icon id removes the icon)."""
    chat = _forum(state, bot_id, chat_id, refusal="not enough rights to manage topics")
    topic = _topic(state, chat, message_thread_id)
    changes: dict[str, Any] = {}
    if name and name != topic.name:
        changes["name"] = name
    if icon_custom_emoji_id is not None and icon_custom_emoji_id != (
        topic.icon_custom_emoji_id or ""
    ):
        changes["icon_custom_emoji_id"] = icon_custom_emoji_id
    if not changes:
        raise errors.bad_request("TOPIC_NOT_MODIFIED")
    state.forums.add(
        chat["id"],
        dataclasses.replace(
            topic,
            name=changes.get("name", topic.name),
            icon_custom_emoji_id=changes.get("icon_custom_emoji_id", topic.icon_custom_emoji_id)
            or None,
        ),
    )
    return _service(state, bot_id, chat, topic.message_thread_id, {"forum_topic_edited": changes})


def set_closed(
    state: EmulatorState,
    bot_id: int,
    chat_id: int | str,
    message_thread_id: int | None,
    *,
    closed: bool,
) -> list[groups.Delivery]:
    """closeForumTopic / reopenForumTopic: only members who manage topics write in a closed one."""
    chat = _forum(state, bot_id, chat_id, refusal="not enough rights to manage topics")
    topic = _topic(state, chat, message_thread_id)
    if topic.is_closed == closed:
        raise errors.bad_request("TOPIC_NOT_MODIFIED")
    state.forums.add(chat["id"], dataclasses.replace(topic, is_closed=closed))
    field = "forum_topic_closed" if closed else "forum_topic_reopened"
    return _service(state, bot_id, chat, topic.message_thread_id, {field: {}})


async def create_forum_topic(call: Call) -> Answer:
    params = call.params
    topic = call.emulator.create_forum_topic(
        call.bot.id,
        params.chat_id(),
        params.text("name") or "",
        icon_color=params.optional_integer("icon_color"),
        icon_custom_emoji_id=params.text("icon_custom_emoji_id"),
    )
    return Answer(topic.to_json())


async def edit_forum_topic(call: Call) -> Answer:
    params = call.params
    call.emulator.edit_forum_topic(
        call.bot.id,
        params.chat_id(),
        params.optional_integer("message_thread_id"),
        name=params.text("name"),
        # Present but empty means "remove the icon", so read it before Params drops it.
        icon_custom_emoji_id=params.raw_text("icon_custom_emoji_id"),
    )
    return Answer(True)


def _closer(closed: bool) -> Method:
    async def close_or_reopen(call: Call) -> Answer:
        params = call.params
        call.emulator.set_forum_topic_closed(
            call.bot.id,
            params.chat_id(),
            params.optional_integer("message_thread_id"),
            closed=closed,
        )
        return Answer(True)

    return close_or_reopen


METHODS: dict[str, Method] = {
    "createforumtopic": create_forum_topic,
    "editforumtopic": edit_forum_topic,
    "closeforumtopic": _closer(True),
    "reopenforumtopic": _closer(False),
}
