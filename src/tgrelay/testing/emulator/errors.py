"""The emulator's errors: Bot API refusals and control-surface mistakes.

EmulatorError
├── BotApiError        an `{"ok": false, ...}` answer of the Bot API (code, description)
├── UnknownBot         no bot with that id (control surface: 404)
├── UnknownChat        no chat with that id (control surface: 404)
└── InvalidPayload     control input that cannot be used (control surface: 400)
"""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """Something the emulator refuses."""


class BotApiError(EmulatorError):
    """The Bot API answers with `ok: false`; `body()` is exactly what Telegram sends."""

    def __init__(
        self, code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        # e.g. {"retry_after": 5} or {"migrate_to_chat_id": -100…}
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(reason: str, parameters: dict[str, Any] | None = None) -> BotApiError:
    """A 400 in Telegram's words: `bad_request("chat not found")`."""
    return BotApiError(400, f"Bad Request: {reason}", parameters)


def not_found() -> BotApiError:
    """Unknown method or a token without the `digits:secret` shape."""
    return BotApiError(404, "Not Found")


def unauthorized() -> BotApiError:
    """Unknown, rotated or revoked token."""
    return BotApiError(401, "Unauthorized")


def conflict(reason: str) -> BotApiError:
    return BotApiError(409, f"Conflict: {reason}")


WEBHOOK_ACTIVE = (
    "can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
    "webhook first"
)
OTHER_POLLER = (
    "terminated by other getUpdates request; make sure that only one bot instance is running"
)


class UnknownBot(EmulatorError):
    """No bot with that id."""

    def __init__(self, bot_id: int) -> None:
        super().__init__(f"bot {bot_id} not found")
        self.bot_id = bot_id


class UnknownChat(EmulatorError):
    """No chat with that id."""

    def __init__(self, chat_id: int) -> None:
        super().__init__(f"chat {chat_id} not found")
        self.chat_id = chat_id


class InvalidPayload(EmulatorError):
    """Control input that cannot be used; the message says why."""
