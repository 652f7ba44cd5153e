"""The fields of an update that processing reads for every update, checked without aiogram.

aiogram's `Update` model runs Python hooks for every nested object (private attributes,
post-init, its unset-field filter): parsing a plain text message cost ~80 µs, 40 % of an
update's processing (py-spy, bench/process.py). Most updates need only their chat and
sender (recorded as last seen) and their raw JSON (the events carry it as Telegram sent
it), so those are checked here with small models of our own, and the full aiogram parse is
left to a domain that reads more (`inbox.models.ProcessedUpdate.update`, parsed on first use).

An update whose essentials are malformed can never be processed, as before: the message
names how many fields are wrong, like aiogram's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tgrelay.telegram.updates import UpdateKind


class ChatSeen(BaseModel):
    """A chat as processing records it (telegram_chats)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    type: str
    title: str | None = None
    username: str | None = None


class UserSeen(BaseModel):
    """A sender as processing records it (telegram_users)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    is_bot: bool
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message_id: int
    date: int
    chat: ChatSeen
    from_: UserSeen | None = Field(default=None, alias="from")


class _CarrierMessage(BaseModel):
    """The message a button was under: maybe inaccessible now (date 0), still with its chat."""

    model_config = ConfigDict(extra="ignore")

    chat: ChatSeen


class _Callback(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    from_: UserSeen = Field(alias="from")
    message: _CarrierMessage | None = None


class _Other(BaseModel):
    """Any other kind: its chat and its sender when it has them."""

    model_config = ConfigDict(extra="ignore")

    chat: ChatSeen | None = None
    from_: UserSeen | None = Field(default=None, alias="from")
    user: UserSeen | None = None


_MESSAGES = frozenset(
    {
        UpdateKind.MESSAGE,
        UpdateKind.EDITED_MESSAGE,
        UpdateKind.CHANNEL_POST,
        UpdateKind.EDITED_CHANNEL_POST,
        UpdateKind.BUSINESS_MESSAGE,
        UpdateKind.EDITED_BUSINESS_MESSAGE,
    }
)


class Malformed(ValueError):
    """The update's essential fields are missing or of the wrong type."""

    def __init__(self, errors: int) -> None:
        super().__init__(f"{errors} errors")
        self.errors = errors


def chat_and_sender(
    raw: dict[str, Any], kind: UpdateKind
) -> tuple[ChatSeen | None, UserSeen | None]:
    """The update's chat and sender (either may be absent); Malformed when what is there, or
    what a message must have (message_id, date, chat), is not well-formed."""
    if kind is UpdateKind.UNKNOWN:
        return None, None
    body = raw.get(kind.value)
    try:
        if kind in _MESSAGES:
            message = _Message.model_validate(body)
            return message.chat, message.from_
        if kind is UpdateKind.CALLBACK_QUERY:
            query = _Callback.model_validate(body)
            return (None if query.message is None else query.message.chat), query.from_
        other = _Other.model_validate(body)
        return other.chat, other.from_ or other.user
    except ValidationError as exc:
        raise Malformed(exc.error_count()) from None
