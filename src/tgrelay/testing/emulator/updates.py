"""Pure rules over Update objects: what kind, which chat, and whether a bot wants it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Every Update field besides update_id, as the Bot API lists them.
UPDATE_KINDS: tuple[str, ...] = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)

# Telegram leaves these out unless a bot names them in allowed_updates.
OPT_IN_KINDS = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


def kind_of(update: Mapping[str, Any]) -> str | None:
    """The update's kind (`message`, `callback_query`, …), or None when it has no known one."""
    for kind in UPDATE_KINDS:
        if kind in update:
            return kind
    for key in update:
        if key != "update_id":
            return key
    return None


def normalize_allowed(values: Iterable[str]) -> tuple[str, ...] | None:
    """An allowed_updates list as stored: an empty list means Telegram's default (None)."""
    kinds = tuple(dict.fromkeys(values))
    return kinds or None


def is_allowed(kind: str | None, allowed: tuple[str, ...] | None) -> bool:
    """Whether a bot with this allowed_updates setting receives updates of this kind."""
    if kind is None:
        return True
    if allowed is None:
        return kind not in OPT_IN_KINDS
    return kind in allowed


def chat_of(update: Mapping[str, Any]) -> dict[str, Any] | None:
    """The chat an update happens in, if it has one (a callback query: its message's chat)."""
    kind = kind_of(update)
    body = update.get(kind) if kind else None
    if not isinstance(body, Mapping):
        return None
    chat = body.get("chat")
    if isinstance(chat, dict):
        return chat
    message = body.get("message")
    if isinstance(message, Mapping) and isinstance(message.get("chat"), dict):
        found: dict[str, Any] = message["chat"]
        return found
    return None


def ordering_key(update: Mapping[str, Any]) -> int | None:
    """Updates with the same key are delivered one at a time in order: the chat, else the user.

    None means the update may go in parallel with anything (no chat and no sender).
    """
    chat = chat_of(update)
    if chat is not None and isinstance(chat.get("id"), int):
        chat_id: int = chat["id"]
        return chat_id
    kind = kind_of(update)
    body = update.get(kind) if kind else None
    if isinstance(body, Mapping):
        sender = body.get("from") or body.get("user")
        if isinstance(sender, Mapping) and isinstance(sender.get("id"), int):
            user_id: int = sender["id"]
            return user_id
    return None
