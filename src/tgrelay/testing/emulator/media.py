"""Media: the files users send, the ids Telegram gives them, and sending them by file_id.

A file_id belongs to one bot (Telegram: "unique for each individual bot and can't be
transferred from one bot to another"); file_unique_id is the same for every bot. A bot
may send a file it received, by file_id, with sendPhoto, sendDocument, sendVideo,
sendVoice or sendSticker; the emulator takes no uploads and no URLs.
"""

from __future__ import annotations

import enum
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tgrelay.testing.emulator import business, errors, outgoing, text
from tgrelay.testing.emulator.calls import Answer, Call, Method


class Kind(enum.StrEnum):
    """The media a message carries, named as its Message field."""

    PHOTO = "photo"
    DOCUMENT = "document"
    VIDEO = "video"
    VOICE = "voice"
    STICKER = "sticker"

    @property
    def has_caption(self) -> bool:
        return self is not Kind.STICKER


# How Telegram's file_ids start for each kind (the type and data-centre bytes, base64url).
_FILE_ID_PREFIX = {
    Kind.PHOTO: "AgACAgIAAxkBAAI",
    Kind.DOCUMENT: "BQACAgIAAxkBAAI",
    Kind.VIDEO: "BAACAgIAAxkBAAI",
    Kind.VOICE: "AwACAgIAAxkBAAI",
    Kind.STICKER: "CAACAgIAAxkBAAI",
}
_ID_ALPHABET = string.ascii_letters + string.digits + "_-"
# Telegram's photo sizes: the longer side of each, smallest first ("s", "m", "x", "y").
PHOTO_SIDES = (90, 320, 800, 1280)

# What a user's file looks like unless the test says otherwise (keys in Telegram's order).
DEFAULTS: dict[Kind, dict[str, Any]] = {
    Kind.PHOTO: {"width": 1280, "height": 960},
    Kind.DOCUMENT: {"file_name": "invoice.pdf", "mime_type": "application/pdf"},
    Kind.VIDEO: {"width": 1280, "height": 720, "duration": 12, "mime_type": "video/mp4"},
    Kind.VOICE: {"duration": 4, "mime_type": "audio/ogg"},
    Kind.STICKER: {
        "width": 512,
        "height": 512,
        "emoji": "\N{THUMBS UP SIGN}",
        "is_animated": False,
        "is_video": False,
        "type": "regular",
    },
}


@dataclass(frozen=True, kw_only=True)
class File:
    """A file as a message shows it: a PhotoSize list for photos, one object otherwise."""

    kind: Kind
    value: Any


class Files:
    """The files the emulated Telegram knows, by the bot that may use each file_id."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._by_id: dict[tuple[int, str], File] = {}

    def new(self, bot_id: int, kind: Kind, details: Mapping[str, Any] | None = None) -> File:
        """A file a user sends to the bot, with fresh ids; `details` override the defaults."""
        given = dict(details or {})
        unknown = set(given) - set(DEFAULTS[kind]) - {"file_size"}
        if unknown:
            raise errors.InvalidPayload(f"a {kind} has no {', '.join(sorted(unknown))}")
        shape = {**DEFAULTS[kind], **given}
        if kind is Kind.PHOTO:
            file = File(kind=kind, value=self._photo_sizes(shape["width"], shape["height"]))
        else:
            size = shape.pop("file_size", self._rng.randrange(10_000, 2_000_000))
            value = {**self._ids(kind), **shape, "file_size": size}
            file = File(kind=kind, value=value)
        for file_id in file_ids(file):
            self._by_id[(bot_id, file_id)] = file
        return file

    def find(self, bot_id: int, file_id: str) -> File | None:
        return self._by_id.get((bot_id, file_id))

    def _photo_sizes(self, width: int, height: int) -> list[dict[str, Any]]:
        longest = max(width, height)
        sizes = []
        for side in PHOTO_SIDES:
            scale = min(side / longest, 1.0)
            sizes.append(
                {
                    **self._ids(Kind.PHOTO),
                    "file_size": self._rng.randrange(1_000, 200_000),
                    "width": round(width * scale),
                    "height": round(height * scale),
                }
            )
            if scale == 1.0:
                break
        return sizes

    def _ids(self, kind: Kind) -> dict[str, str]:
        def token(length: int) -> str:
            return "".join(self._rng.choice(_ID_ALPHABET) for _ in range(length))

        return {
            "file_id": _FILE_ID_PREFIX[kind] + token(56),
            "file_unique_id": "AQAD" + token(12),
        }


def file_ids(file: File) -> list[str]:
    """Every file_id that names the file (each photo size has its own)."""
    if file.kind is Kind.PHOTO:
        return [size["file_id"] for size in file.value]
    return [file.value["file_id"]]


def content(
    file: File, caption: str = "", entities: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The message fields that carry a file and its caption."""
    shaped: dict[str, Any] = {str(file.kind): file.value}
    if caption:
        shaped["caption"] = caption
        if entities:
            shaped["caption_entities"] = entities
    return shaped


def kind_of(message: Mapping[str, Any]) -> Kind | None:
    """The media a message carries, if any."""
    for kind in Kind:
        if kind in message:
            return kind
    return None


def sender(kind: Kind) -> Method:
    """The Bot API method that sends a file of this kind by file_id (sendPhoto, ...)."""

    async def send(call: Call) -> Answer:
        params, state = call.params, call.emulator.state
        chat_id = params.chat_id()
        connection_id = params.text("business_connection_id")
        if connection_id is None:
            state.resolve_chat(call.bot.id, chat_id)
        file = _named_file(call, kind)
        caption, entities = "", None
        if kind.has_caption:
            given = params.json("caption_entities", "caption entities")
            if given is not None and not isinstance(given, list):
                raise errors.bad_request("can't parse caption entities JSON object")
            caption, entities = text.caption(
                params.text("caption") or "", params.text("parse_mode"), given
            )
        if connection_id is not None:
            shaped = content(file, caption, entities)
            return Answer(business.send(call, connection_id, chat_id, shaped))
        options = outgoing.options(params)
        message = state.bot_message(
            call.bot.id,
            chat_id,
            content(file, caption, entities),
            reply_markup=options.reply_markup,
            message_thread_id=options.message_thread_id,
            reply_to_message_id=options.reply_to_message_id,
            allow_sending_without_reply=options.allow_sending_without_reply,
        )
        return Answer(message)

    return send


def _named_file(call: Call, kind: Kind) -> File:
    file_id = call.params.text(str(kind))
    if file_id is None:
        raise errors.bad_request(f"there is no {kind} in the request")
    file = call.emulator.state.files.find(call.bot.id, file_id)
    if file is None:
        raise errors.bad_request("wrong file identifier/HTTP URL specified")
    if file.kind is not kind:
        raise errors.bad_request("type of file mismatch")
    return file


METHODS: dict[str, Method] = {f"send{kind}": sender(kind) for kind in Kind}
