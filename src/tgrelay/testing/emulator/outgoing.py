"""What every sending method shares: its keyboard, the message it replies to, its topic.

Inline keyboards are checked as Telegram checks them; other keyboards pass unchecked (the
emulator has no client that shows them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tgrelay.testing.emulator import errors
from tgrelay.testing.emulator.params import Params

MAX_CALLBACK_DATA_BYTES = 64  # InlineKeyboardButton.callback_data: 1-64 bytes
# Button kinds besides url and callback_data; the emulator accepts them as they are.
_OTHER_BUTTON_KINDS = frozenset(
    {
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
_URL_SCHEMES = frozenset({"http", "https", "tg"})


@dataclass(frozen=True, kw_only=True)
class Options:
    """A send's options besides its content."""

    reply_markup: dict[str, Any] | None
    message_thread_id: int | None
    reply_to_message_id: int | None
    allow_sending_without_reply: bool


def options(params: Params) -> Options:
    """The send options of a call, checked."""
    reply = params.json("reply_parameters", "reply parameters") or {}
    if not isinstance(reply, dict):
        raise errors.bad_request("can't parse reply parameters JSON object")
    return Options(
        reply_markup=reply_markup(params),
        message_thread_id=params.optional_integer("message_thread_id"),
        reply_to_message_id=reply.get("message_id")
        or params.optional_integer("reply_to_message_id"),
        allow_sending_without_reply=bool(reply.get("allow_sending_without_reply"))
        or params.flag("allow_sending_without_reply"),
    )


def reply_markup(params: Params) -> dict[str, Any] | None:
    """The call's reply_markup, its inline keyboard checked."""
    markup = params.json("reply_markup", "reply keyboard markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise errors.bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        check_inline_keyboard(markup["inline_keyboard"])
    return markup


def check_inline_keyboard(rows: Any) -> None:
    """Refuse an inline keyboard Telegram refuses, in its words."""
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise errors.bad_request(
            'can\'t parse inline keyboard markup: Field "inline_keyboard" must be of type Array'
        )
    for row in rows:
        for button in row:
            check_button(button)


def check_button(button: Any) -> None:
    if not isinstance(button, dict):
        raise errors.bad_request("can't parse inline keyboard button: Object expected")
    if not isinstance(button.get("text"), str):
        raise errors.bad_request(
            'can\'t parse inline keyboard button: Field "text" must be of type String'
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise errors.bad_request("BUTTON_DATA_INVALID")
    elif "url" in button:
        url = button["url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme.lower() not in _URL_SCHEMES or not parts.netloc:
            raise errors.bad_request("inline keyboard button URL is invalid")
    elif not _OTHER_BUTTON_KINDS & set(button):
        raise errors.bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )


def link_preview_options(params: Params) -> dict[str, Any] | None:
    """The message's link_preview_options: as sent, or the old disable_web_page_preview flag.

    Telegram echoes them in the Message only when they change the default.
    """
    given = params.json("link_preview_options", "link preview options")
    if given is None:
        return {"is_disabled": True} if params.flag("disable_web_page_preview") else None
    if not isinstance(given, dict):
        raise errors.bad_request("can't parse link preview options JSON object")
    changed = {key: value for key, value in given.items() if value not in (None, False)}
    return changed or None


def echoed_markup(markup: dict[str, Any] | None) -> dict[str, Any] | None:
    """The markup a Message shows: Telegram echoes inline keyboards, never other keyboards."""
    return markup if markup and "inline_keyboard" in markup else None
