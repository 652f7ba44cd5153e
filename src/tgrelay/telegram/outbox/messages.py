"""What a domain can ask the outbox to do in Telegram: one Bot API request each, as data.

Requests are pydantic models so that a send job's payload is their JSON and reads back as the
same typed value (`dump` / `load`); every limit Telegram would refuse later (callback data of
more than 64 bytes, a sticker with a caption) is refused here, when the domain builds the
request, with an error that says which field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

# Telegram's own bounds (https://core.telegram.org/bots/api#inlinekeyboardbutton,
# #sendmessage, #sendphoto, #createforumtopic, #answercallbackquery).
MAX_CALLBACK_DATA_BYTES = 64
MAX_TEXT_CHARS = 4096
MAX_CAPTION_CHARS = 1024
MAX_TOPIC_NAME_CHARS = 128
MAX_CALLBACK_ANSWER_CHARS = 200


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UrlButton(_Model):
    """An inline button that opens a link."""

    text: str = Field(min_length=1)
    url: str = Field(min_length=1)


class CallbackButton(_Model):
    """An inline button whose press comes back as a callback query carrying `callback_data`."""

    text: str = Field(min_length=1)
    callback_data: str

    @field_validator("callback_data")
    @classmethod
    def _fits(cls, value: str) -> str:
        size = len(value.encode())
        if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
            raise ValueError(
                f"callback_data must be 1-{MAX_CALLBACK_DATA_BYTES} bytes in UTF-8, "
                f"not {size}: Telegram refuses the whole message otherwise"
            )
        return value


Button = UrlButton | CallbackButton


class Keyboard(_Model):
    """An inline keyboard: rows of buttons, top to bottom."""

    rows: tuple[tuple[Button, ...], ...]

    @classmethod
    def column(cls, *buttons: Button) -> Keyboard:
        """One button per row."""
        return cls(rows=tuple((button,) for button in buttons))


class Entity(_Model):
    """A MessageEntity (bold, link, mention…) over UTF-16 code units, as Telegram counts."""

    type: str
    offset: int = Field(ge=0)
    length: int = Field(ge=1)
    url: str | None = None
    language: str | None = None
    custom_emoji_id: str | None = None


class _Request(_Model):
    bot_id: int  # the bot that sends; its token comes from the outbox's token source


class _InChat(_Request):
    chat_id: int


class SendText(_InChat):
    """sendMessage."""

    method: Literal["sendMessage"] = "sendMessage"
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    parse_mode: str | None = None
    entities: tuple[Entity, ...] = ()
    keyboard: Keyboard | None = None
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None  # a forum topic
    # Sent as the Telegram Business account that connected the bot, in its chat with
    # `chat_id`; copyMessage has no such parameter, hence only here and in SendFile.
    business_connection_id: str | None = None

    @model_validator(mode="after")
    def _one_markup(self) -> SendText:
        if self.parse_mode is not None and self.entities:
            raise ValueError("give parse_mode or entities, not both (Telegram ignores one)")
        return self


FileMethod = Literal["sendPhoto", "sendDocument", "sendVideo", "sendVoice", "sendSticker"]


class SendFile(_InChat):
    """A photo, document, video, voice note or sticker Telegram already holds, by file_id."""

    method: FileMethod
    file_id: str = Field(min_length=1)
    caption: str | None = Field(default=None, max_length=MAX_CAPTION_CHARS)
    parse_mode: str | None = None
    caption_entities: tuple[Entity, ...] = ()
    keyboard: Keyboard | None = None
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    business_connection_id: str | None = None  # as in SendText

    @model_validator(mode="after")
    def _sticker_has_no_caption(self) -> SendFile:
        if self.method == "sendSticker" and (self.caption or self.caption_entities):
            raise ValueError("a sticker has no caption")
        return self


class CopyMessage(_InChat):
    """copyMessage: a message of another chat sent again here, without a forward header."""

    method: Literal["copyMessage"] = "copyMessage"
    from_chat_id: int
    message_id: int
    caption: str | None = Field(default=None, max_length=MAX_CAPTION_CHARS)
    parse_mode: str | None = None
    keyboard: Keyboard | None = None
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None


class EditText(_InChat):
    """editMessageText of a message the bot sent."""

    method: Literal["editMessageText"] = "editMessageText"
    message_id: int
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    parse_mode: str | None = None
    entities: tuple[Entity, ...] = ()
    keyboard: Keyboard | None = None


class EditKeyboard(_InChat):
    """editMessageReplyMarkup: a new keyboard for a message the bot sent (None removes it)."""

    method: Literal["editMessageReplyMarkup"] = "editMessageReplyMarkup"
    message_id: int
    keyboard: Keyboard | None = None


class CreateTopic(_InChat):
    """createForumTopic; the outcome carries the new topic's message_thread_id."""

    method: Literal["createForumTopic"] = "createForumTopic"
    name: str = Field(min_length=1, max_length=MAX_TOPIC_NAME_CHARS)
    icon_custom_emoji_id: str | None = None


class EditTopic(_InChat):
    """editForumTopic: a new name and/or icon."""

    method: Literal["editForumTopic"] = "editForumTopic"
    message_thread_id: int
    name: str | None = Field(default=None, min_length=1, max_length=MAX_TOPIC_NAME_CHARS)
    icon_custom_emoji_id: str | None = None


class CloseTopic(_InChat):
    """closeForumTopic."""

    method: Literal["closeForumTopic"] = "closeForumTopic"
    message_thread_id: int


class ReopenTopic(_InChat):
    """reopenForumTopic."""

    method: Literal["reopenForumTopic"] = "reopenForumTopic"
    message_thread_id: int


class AnswerCallback(_Request):
    """answerCallbackQuery: stops the button's spinner, optionally with a notice or an alert."""

    method: Literal["answerCallbackQuery"] = "answerCallbackQuery"
    callback_query_id: str = Field(min_length=1)
    text: str | None = Field(default=None, max_length=MAX_CALLBACK_ANSWER_CHARS)
    show_alert: bool = False
    url: str | None = None


InChat = (
    SendText
    | SendFile
    | CopyMessage
    | EditText
    | EditKeyboard
    | CreateTopic
    | EditTopic
    | CloseTopic
    | ReopenTopic
)
Request = Annotated[InChat | AnswerCallback, Field(discriminator="method")]

TopicRequest = CreateTopic | EditTopic | CloseTopic | ReopenTopic

_requests: TypeAdapter[Request] = TypeAdapter(Request)


def dump(request: Request) -> dict[str, Any]:
    """The request as JSON-ready data (a send job's payload)."""
    return request.model_dump(mode="json", exclude_defaults=False)


def load(data: Any) -> Request:
    """A request back from `dump`'s data; raises pydantic's ValidationError when malformed."""
    return _requests.validate_python(data)


def chat_of(request: Request) -> int | None:
    """The chat a request acts in (what rate limits and ordering count), if any."""
    return None if isinstance(request, AnswerCallback) else request.chat_id


def moved_to(request: InChat, chat_id: int) -> InChat:
    """The same request in the supergroup a group became (`migrate_to_chat_id`)."""
    return request.model_copy(update={"chat_id": chat_id})


class Destination(_Model):
    """Where a send goes as its domain sees it at send time (a connection's chat and topic)."""

    chat_id: int
    message_thread_id: int | None = None


def aimed_at(request: InChat, destination: Destination) -> InChat:
    """The request sent to `destination`: its chat, and its topic for a message sent into one
    (edits and topic management name their own thread and keep it)."""
    changes: dict[str, Any] = {"chat_id": destination.chat_id}
    if isinstance(request, SendText | SendFile | CopyMessage):
        changes["message_thread_id"] = destination.message_thread_id
    return request.model_copy(update=changes)
