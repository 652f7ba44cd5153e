"""Bot API parameters from wherever a client puts them: query string, JSON, form or multipart.

Form and query values arrive as strings and JSON values typed; the getters accept both,
as Telegram does (aiogram sends `"true"`, `"40"` and JSON-encoded lists as form fields).
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request

from tgrelay.testing.emulator import errors

MAX_BODY_BYTES = 10 * 1024 * 1024  # the emulator handles no file uploads worth more


class Params:
    """One request's parameters, read with Telegram's leniency about types."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        # Empty values count as absent, as on Telegram, except where emptiness means
        # something (`raw_text`).
        self._values = {k: v for k, v in values.items() if v is not None and v != ""}
        self._empty = {k for k, v in values.items() if v == ""}

    @classmethod
    async def read(cls, request: Request) -> Params:
        """Query string first, then the body's fields on top."""
        values: dict[str, Any] = dict(request.query_params)
        body = await _read_body(request)
        if body:
            values.update(_parse_body(request.headers.get("content-type", ""), body))
        return cls(values)

    def has(self, name: str) -> bool:
        return name in self._values

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        raise errors.bad_request(f'field "{name}" must be of type String')

    def raw_text(self, name: str) -> str | None:
        """A string parameter where sending it empty differs from leaving it out."""
        return "" if name in self._empty else self.text(name)

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        """An integer clamped to [low, high], as Telegram clamps limit, timeout and the like."""
        value = self._values.get(name)
        if value is None:
            return default
        number = _to_int(value)
        if number is None:
            raise errors.bad_request(f'field "{name}" must be of type Integer')
        return min(max(number, low), high)

    def optional_integer(self, name: str) -> int | None:
        value = self._values.get(name)
        if value is None:
            return None
        number = _to_int(value)
        if number is None:
            raise errors.bad_request(f'field "{name}" must be of type Integer')
        return number

    def flag(self, name: str) -> bool:
        value = self._values.get(name, False)
        if isinstance(value, str):
            return value.strip().lower() in {"true", "1"}
        return bool(value)

    def chat_id(self, name: str = "chat_id") -> int | str:
        """A chat id (`chat_id`, `from_chat_id`): a number, or `@username` of a public chat."""
        value = self._values.get(name)
        if value is None:
            raise errors.bad_request(f"{name} is empty")
        number = _to_int(value)
        if number is not None:
            return number
        if isinstance(value, str) and value.startswith("@") and len(value) > 1:
            return value
        raise errors.bad_request("chat not found")

    def json(self, name: str, what: str) -> Any:
        """A structured parameter: as sent in a JSON body, or JSON-encoded in a form field."""
        value = self._values.get(name)
        if not isinstance(value, str):
            return value
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise errors.bad_request(f"can't parse {what} JSON object") from None


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


async def _read_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise errors.BotApiError(413, "Request Entity Too Large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json":
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise errors.bad_request("can't parse JSON encoded request") from None
        if not isinstance(parsed, dict):
            raise errors.bad_request("JSON object expected")
        return parsed
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if kind == "multipart/form-data":
        return _parse_multipart(content_type, body)
    return {}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """Text fields of a multipart/form-data body; file parts are skipped."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise errors.bad_request("can't parse multipart/form-data request")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str) or part.get_filename() is not None:
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            charset = part.get_content_charset() or "utf-8"
            fields[name] = payload.decode(charset, "replace")
    return fields
