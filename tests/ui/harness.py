"""Acting as Telegram users through the emulator's control API, and reading rendered pages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx

from tests.e2e.harness import Tgrelay

ANN = {"id": 5001, "is_bot": False, "first_name": "Ann", "username": "ann"}


class Telegram:
    """Users doing things in Telegram, through the emulator's control API."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def new_bot(self, username: str) -> dict[str, Any]:
        return await self._call("POST", "/_emulator/bots", {"username": username})

    async def send_private(self, bot_id: int, user: dict[str, Any], text: str) -> None:
        await self._call(
            "POST", "/_emulator/updates", {"bot_id": bot_id, "from": user, "text": text}
        )

    async def new_group(self, title: str) -> int:
        chat = await self._call("POST", "/_emulator/chats", {"type": "supergroup", "title": title})
        chat_id: int = chat["id"]
        return chat_id

    async def add_bot(self, chat_id: int, bot_id: int, by: dict[str, Any]) -> None:
        await self._call(
            "POST", f"/_emulator/chats/{chat_id}/members", {"bot_id": bot_id, "by": by}
        )

    async def remove_bot(self, chat_id: int, bot_id: int, by: dict[str, Any]) -> None:
        await self._call("DELETE", f"/_emulator/chats/{chat_id}/members/{bot_id}", {"by": by})

    async def delay_requests(self, seconds: float) -> None:
        """Every Bot API request takes `seconds` to reach (emulated) Telegram from now on."""
        await self._call(
            "PUT", "/_emulator/latency", {"min_seconds": seconds, "max_seconds": seconds}
        )

    async def _call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.request(method, path, json=body)
        assert response.is_success, response.text
        found: dict[str, Any] = response.json()
        return found


def start_token(start_link: str) -> str:
    """The payload of a `https://t.me/<bot>?start=<token>` deep link."""
    [token] = parse_qs(urlsplit(start_link).query)["start"]
    return token


class _Tables(HTMLParser):
    """Collects the text of every table body row, cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    """The cell texts of the page's table body rows."""
    parser = _Tables()
    parser.feed(html)
    return parser.rows


CSRF_FIELD_RE = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_token(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = CSRF_FIELD_RE.search(html)
    assert match is not None, "the page has no form with a CSRF token"
    return match.group(1)


class OwnPages(httpx.Auth):
    """Makes each POST look like a form of tgrelay's own pages: our Origin and the CSRF token
    (unless the test sets either itself)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.token = ""

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.method != "POST":
            yield request
            return
        fields = parse_qsl(request.content.decode(), keep_blank_values=True)
        if self.token and not any(name == "csrf_token" for name, _ in fields):
            fields.append(("csrf_token", self.token))
        headers = dict(request.headers)
        headers.setdefault("origin", self.origin)
        headers["content-type"] = "application/x-www-form-urlencoded"
        headers.pop("content-length", None)
        yield httpx.Request(
            "POST", request.url, headers=headers, content=urlencode(fields).encode()
        )


async def sign_in(client: httpx.AsyncClient, api_key: str) -> httpx.Response:
    """Sign in as a browser does: the sign-in form's token, our Origin, the key."""
    form = await client.get("/ui/login")
    return await client.post(
        "/ui/login",
        data={"api_key": api_key, "csrf_token": csrf_token(form.text)},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )


@asynccontextmanager
async def browser(relay: Tgrelay, api_key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client, signed in when given a key, whose posts pass the CSRF checks."""
    own = OwnPages(relay.base_url)
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=10, auth=own) as client:
        if api_key is not None:
            signed = await sign_in(client, api_key)
            assert (signed.status_code, signed.headers["location"]) == (303, "/ui/connections")
            own.token = csrf_token((await client.get("/ui/api-keys")).text)
        yield client
