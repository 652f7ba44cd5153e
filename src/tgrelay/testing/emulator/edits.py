"""Edits: a bot changing its message's text or keyboard, and a user editing their message.

A bot's edit changes the message in place (the chat's messages show the new version) and
sends no update; a user's edit sends the bot an `edited_message`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from tgrelay.testing.emulator import errors, media, objects, outgoing, text
from tgrelay.testing.emulator.calls import Answer, Call

if TYPE_CHECKING:
    from tgrelay.testing.emulator.state import EmulatorState

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


def _own_message(call: Call, chat: dict[str, Any]) -> dict[str, Any]:
    """The bot's message the call names, or Telegram's refusal."""
    message_id = call.params.optional_integer("message_id")
    if message_id is None:
        raise errors.bad_request("message identifier is not specified")
    message = call.emulator.state.chats.full_message(call.bot.id, chat, message_id)
    if message is None:
        raise errors.bad_request("message to edit not found")
    if message["from"]["id"] != call.bot.id:
        raise errors.bad_request("message can't be edited")
    return message


async def edit_message_text(call: Call) -> Answer:
    """editMessageText: new text (and keyboard: leaving it out removes the keyboard)."""
    params, state = call.params, call.emulator.state
    chat = state.resolve_chat(call.bot.id, params.chat_id())
    message = _own_message(call, chat)
    given = params.json("entities", "entities")
    if given is not None and not isinstance(given, list):
        raise errors.bad_request("can't parse entities JSON object")
    new_text, entities = text.outgoing(params.text("text") or "", params.text("parse_mode"), given)
    markup = outgoing.echoed_markup(outgoing.reply_markup(params))
    if "text" not in message:
        raise errors.bad_request("there is no text in the message to edit")
    unchanged = (new_text, entities, markup) == (
        message["text"],
        message.get("entities", []),
        message.get("reply_markup"),
    )
    if unchanged:
        raise errors.bad_request(NOT_MODIFIED)
    edited = state.chats.edit(
        call.bot.id,
        chat,
        message["message_id"],
        {
            "text": new_text,
            "entities": entities or None,
            "link_preview_options": outgoing.link_preview_options(params),
            "reply_markup": markup,
        },
    )
    return Answer(copy.deepcopy(edited))


async def edit_message_reply_markup(call: Call) -> Answer:
    """editMessageReplyMarkup: a new inline keyboard, or none when reply_markup is absent."""
    params, state = call.params, call.emulator.state
    chat = state.resolve_chat(call.bot.id, params.chat_id())
    message = _own_message(call, chat)
    markup = outgoing.echoed_markup(outgoing.reply_markup(params))
    if "text" not in message and media.kind_of(message) is None:
        raise errors.bad_request("message can't be edited")
    if markup == message.get("reply_markup"):
        raise errors.bad_request(NOT_MODIFIED)
    edited = state.chats.edit(call.bot.id, chat, message["message_id"], {"reply_markup": markup})
    return Answer(copy.deepcopy(edited))


def user_edit(
    state: EmulatorState, bot_id: int, user: objects.User, chat_id: int, message_id: int, new: str
) -> dict[str, Any]:
    """The user edits the text (or caption) of their message; returns the `edited_message`
    Update as queued for the bot."""
    chat = state.chats.get(chat_id)
    if chat is None:
        raise errors.UnknownChat(chat_id)
    message = state.chats.full_message(bot_id, chat, message_id)
    if message is None:
        raise errors.InvalidPayload(f"no message {message_id} in chat {chat_id}")
    if message["from"]["id"] != user.id:
        raise errors.InvalidPayload(f"message {message_id} is not from user {user.id}")
    if not new:
        raise errors.InvalidPayload("an edit needs text")
    entities = text.command_entities(new) or None
    if "text" in message:
        changes: dict[str, Any] = {"text": new, "entities": entities}
    elif (kind := media.kind_of(message)) is not None and kind.has_caption:
        changes = {"caption": new, "caption_entities": entities}
    else:
        raise errors.InvalidPayload(f"message {message_id} has no text or caption to edit")
    edited = state.chats.edit(bot_id, chat, message_id, changes)
    return state.enqueue(bot_id, {"edited_message": copy.deepcopy(edited)})
