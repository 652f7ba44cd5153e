"""Message text as Telegram treats it: entity offsets in UTF-16 units, HTML parse mode, limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from tgrelay.testing.emulator import errors

MAX_TEXT_LENGTH = 4096  # characters after entity parsing (Bot API sendMessage)
MAX_CAPTION_LENGTH = 1024  # characters after entity parsing (sendPhoto and the like)
PARSE_MODES = frozenset({"html", "markdown", "markdownv2"})  # matched case-insensitively

_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@/])")

# HTML tags Telegram accepts, and the entity each becomes.
_SIMPLE_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "code": "code",
    "pre": "pre",
}


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of every entity offset and length."""
    return len(text.encode("utf-16-le")) // 2


def command_entities(text: str) -> list[dict[str, Any]]:
    """The `bot_command` entities Telegram marks in a user's text (`/start`, `/help@bot`)."""
    return [
        {
            "offset": utf16_len(text[: match.start()]),
            "length": utf16_len(match.group()),
            "type": "bot_command",
        }
        for match in _COMMAND.finditer(text)
    ]


def outgoing(
    text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None
) -> tuple[str, list[dict[str, Any]]]:
    """A bot's text as Telegram stores it: markup parsed, whitespace trimmed, limits checked.

    Only HTML is parsed; Markdown and MarkdownV2 text is kept as sent.
    """
    text, entities = _parsed(text, parse_mode, entities)
    if not text:
        raise errors.bad_request("message text is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise errors.bad_request("message is too long")
    return text, entities


def caption(
    text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None
) -> tuple[str, list[dict[str, Any]]]:
    """A bot's media caption as Telegram stores it; it may be empty (no caption)."""
    text, entities = _parsed(text, parse_mode, entities)
    if len(text) > MAX_CAPTION_LENGTH:
        raise errors.bad_request("message caption is too long")
    return text, entities


def _parsed(
    text: str, parse_mode: str | None, entities: list[dict[str, Any]] | None
) -> tuple[str, list[dict[str, Any]]]:
    if parse_mode is not None and parse_mode.lower() not in PARSE_MODES:
        raise errors.bad_request("unsupported parse_mode")
    if entities is None and parse_mode is not None and parse_mode.lower() == "html":
        text, entities = _parse_html(text)
    return _trim(text, entities or [])


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    stripped = text.strip()
    if stripped == text:
        return text, entities
    shift = utf16_len(text[: len(text) - len(text.lstrip())])
    end = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        stop = min(entity["offset"] + entity["length"] - shift, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


@dataclass
class _Open:
    tag: str
    offset: int
    # None: the tag adds no entity of its own (a <code> that names its <pre>'s language).
    type: str | None
    extra: dict[str, Any] = field(default_factory=dict)


class _HtmlEntities(HTMLParser):
    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self._source = source
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.parts: list[str] = []
        self.length = 0
        self.open: list[_Open] = []
        self.entities: list[dict[str, Any]] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
        self.length += utf16_len(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _SIMPLE_TAGS:
            opened = _Open(tag, self.length, _SIMPLE_TAGS[tag])
            language = (attributes.get("class") or "").removeprefix("language-")
            if tag == "code" and self.open and self.open[-1].type == "pre" and language:
                self.open[-1].extra["language"] = language
                opened.type = None
        elif tag == "span" and attributes.get("class") == "tg-spoiler":
            opened = _Open(tag, self.length, "spoiler")
        elif tag == "a":
            href = attributes.get("href")
            opened = _Open(tag, self.length, "text_link" if href else None)
            if href:
                opened.extra["url"] = href
        elif tag == "blockquote":
            expandable = "expandable" in attributes
            opened = _Open(
                tag, self.length, "expandable_blockquote" if expandable else "blockquote"
            )
        elif tag == "tg-emoji" and attributes.get("emoji-id"):
            opened = _Open(tag, self.length, "custom_emoji")
            opened.extra["custom_emoji_id"] = attributes["emoji-id"]
        else:
            raise self._error(f'Unsupported start tag "{tag}" at byte offset {self._offset()}')
        self.open.append(opened)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1].tag != tag:
            expected = f', expected "</{self.open[-1].tag}>"' if self.open else ""
            raise self._error(
                f'Unmatched end tag at byte offset {self._offset()}{expected}, found "</{tag}>"'
            )
        opened = self.open.pop()
        length = self.length - opened.offset
        if opened.type is not None and length > 0:
            self.entities.append(
                {"offset": opened.offset, "length": length, "type": opened.type, **opened.extra}
            )

    def close(self) -> None:
        super().close()
        if self.open:
            raise self._error(
                f'Can\'t find end tag corresponding to start tag "{self.open[-1].tag}"'
            )

    def _offset(self) -> int:
        line, column = self.getpos()
        index = self._line_starts[line - 1] + column
        return len(self._source[:index].encode())

    @staticmethod
    def _error(reason: str) -> errors.BotApiError:
        return errors.bad_request(f"can't parse entities: {reason}")


def _parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _HtmlEntities(source)
    parser.feed(source)
    parser.close()
    entities = sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))
    return "".join(parser.parts), entities
