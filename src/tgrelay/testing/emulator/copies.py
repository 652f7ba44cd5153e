"""copyMessage: a message's content sent again by the bot, without a link to the original."""

from __future__ import annotations

from typing import Any

from tgrelay.testing.emulator import errors, media, outgoing, text
from tgrelay.testing.emulator.calls import Answer, Call


def copied_content(original: dict[str, Any], call: Call) -> dict[str, Any]:
    """What the copy carries: the text and entities, or the media with its caption (or the
    new caption the call gives). Service messages carry neither and cannot be copied."""
    params = call.params
    if "text" in original:
        return {"text": original["text"], "entities": original.get("entities")}
    kind = media.kind_of(original)
    if kind is None:
        raise errors.bad_request("message can't be copied")
    file = media.File(kind=kind, value=original[str(kind)])
    if not kind.has_caption:
        return media.content(file)
    if params.has("caption"):
        given = params.json("caption_entities", "caption entities")
        if given is not None and not isinstance(given, list):
            raise errors.bad_request("can't parse caption entities JSON object")
        caption, entities = text.caption(
            params.text("caption") or "", params.text("parse_mode"), given
        )
        return media.content(file, caption, entities)
    return media.content(file, original.get("caption", ""), original.get("caption_entities"))


async def copy_message(call: Call) -> Answer:
    """copyMessage's result is a MessageId: `{"message_id": N}` of the copy."""
    params, state = call.params, call.emulator.state
    chat_id = params.chat_id()
    source = state.resolve_chat(call.bot.id, params.chat_id("from_chat_id"))
    message_id = params.optional_integer("message_id")
    if message_id is None:
        raise errors.bad_request("message identifier is not specified")
    original = state.chats.full_message(call.bot.id, source, message_id)
    if original is None:
        raise errors.bad_request("message to copy not found")
    content = copied_content(original, call)
    options = outgoing.options(params)
    copy = state.bot_message(
        call.bot.id,
        chat_id,
        content,
        reply_markup=options.reply_markup,
        message_thread_id=options.message_thread_id,
        reply_to_message_id=options.reply_to_message_id,
        allow_sending_without_reply=options.allow_sending_without_reply,
    )
    return Answer({"message_id": copy["message_id"]})
