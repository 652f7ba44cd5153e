"""Incoming Telegram messages as a ticket records them (`Written`), read from their JSON: the
same reading for the bot's private chats, forum topics and business chats."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tgrelay.support import sends

MEDIA_KINDS = tuple(sends.FILE_METHODS)


@dataclass(frozen=True, kw_only=True)
class Written:
    """A Telegram message as a ticket records it."""

    message_id: int
    text: str | None  # the text or caption
    kind: str  # text | photo | document | video | voice | sticker | other
    reply_to: int | None  # the message it replies to, in its own chat
    author_id: int
    at: datetime  # when tgrelay stored its update (the relay latency starts here)
    file: sends.Attachment | None = None  # its file, sent again by file_id to a business chat


def written(message: dict[str, Any], at: datetime) -> Written:
    """The message as a ticket records it; `at` is when tgrelay stored its update."""
    replied = message.get("reply_to_message")
    reply_to = None
    # In a forum every topic message "replies" to the topic's creation: that is no reply.
    if replied is not None and replied.get("message_id") != message.get("message_thread_id"):
        reply_to = int(replied["message_id"])
    return Written(
        message_id=int(message["message_id"]),
        text=text_of(message),
        kind=kind_of(message),
        reply_to=reply_to,
        author_id=int(message["from"]["id"]),
        at=at,
        file=sends.attachment_of(message),
    )


def text_of(message: dict[str, Any]) -> str | None:
    """Its text, or a media message's caption."""
    text = message.get("text", message.get("caption"))
    return None if text is None else str(text)


def kind_of(message: dict[str, Any]) -> str:
    """text, one of MEDIA_KINDS, or other."""
    if "text" in message:
        return "text"
    return next((kind for kind in MEDIA_KINDS if kind in message), "other")
