"""Users and chats as tests describe them, checked and turned into Telegram's JSON shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tgrelay.testing.emulator import errors

ChatType = Literal["private", "group", "supergroup", "channel"]


class User(BaseModel):
    """A Telegram User; unknown fields are kept so richer fixtures pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: int = Field(gt=0)
    is_bot: bool = False
    first_name: str = Field(min_length=1)
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        shaped: dict[str, Any] = compact(self.model_dump())
        return shaped


class Chat(BaseModel):
    """A Telegram Chat: private chats carry the user's names, groups a title."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # Field order is Telegram's key order.
    id: int
    title: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    username: str | None = None
    type: ChatType
    # Supergroups with topics enabled.
    is_forum: bool | None = None

    def to_json(self) -> dict[str, Any]:
        shaped: dict[str, Any] = compact(self.model_dump())
        return shaped


def parse_user(data: Mapping[str, Any]) -> User:
    """A User from JSON, or InvalidPayload saying what is wrong."""
    try:
        return User.model_validate(dict(data))
    except ValidationError as exc:
        raise errors.InvalidPayload(f"invalid user: {_first_error(exc)}") from exc


def parse_chat(data: Mapping[str, Any]) -> Chat:
    """A Chat from JSON, or InvalidPayload saying what is wrong."""
    try:
        chat = Chat.model_validate(dict(data))
    except ValidationError as exc:
        raise errors.InvalidPayload(f"invalid chat: {_first_error(exc)}") from exc
    if chat.type == "private":
        if chat.id <= 0:
            raise errors.InvalidPayload("a private chat has the user's (positive) id")
    elif chat.id >= 0:
        raise errors.InvalidPayload("group, supergroup and channel ids are negative")
    elif not chat.title:
        raise errors.InvalidPayload(f"a {chat.type} needs a title")
    return chat


def private_chat_of(user: User) -> Chat:
    """The private chat between a user and a bot, as Telegram shows it (id == user id)."""
    return Chat(
        id=user.id,
        type="private",
        first_name=user.first_name,
        last_name=user.last_name,
        username=user.username,
    )


def check_sender(user: User, chat: Chat) -> None:
    """A user writes in a private chat only when it is their own chat."""
    if chat.type == "private" and chat.id != user.id:
        raise errors.InvalidPayload("a private chat's id must equal the sender's id")
    if chat.type == "channel":
        raise errors.InvalidPayload("users do not write in channels; inject a channel_post")


def encode(value: Any) -> bytes:
    """JSON bytes of a body or answer.

    orjson stops at 64-bit integers; an injected update with larger ones (Telegram never sends
    them, tests of tgrelay's limits do) goes out through the stdlib encoder instead.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def compact(value: Any) -> Any:
    """JSON without null fields, as Telegram omits them."""
    if isinstance(value, Mapping):
        return {key: compact(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [compact(item) for item in value]
    return value


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
